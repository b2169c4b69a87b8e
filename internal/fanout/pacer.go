package fanout

import "time"

// Tuning values of the batching rule (see Pacer).
const (
	// HoldFactor is how long, as a multiple of the time the last frame
	// took to be written, a saturated room holds the next batch after that
	// frame was written: 1 lets it spend at most half its time writing
	// frames.
	HoldFactor = 1
	// SaturatedFrame is the average number of messages per frame at and
	// above which the room counts as saturated: messages come faster than
	// it writes frames, and only a hold gives its writers' CPU back. A
	// room below it sends each batch as soon as the frame before it is
	// written, so its messages wait no longer than that.
	SaturatedFrame = 2
	// FrameAverageWeight is the weight of the newest frame in the average
	// number of messages per frame (an exponential average over about the
	// last 1/FrameAverageWeight frames), so that two messages that happen
	// to share a frame do not make the room saturated.
	FrameAverageWeight = 0.25
)

// Pacer is the room's batching rule: it says when a batch of committed
// messages may leave, given when the frames before it left and when they
// were written. The hub owns it, keeps the timer and sends the batch; the
// Pacer only reads the clock values it is given.
//
// The rule: while the last frame is in flight (its writers have not all
// released it, but for its stragglers) the batch waits for it, unless the
// writers are behind (the last frame to be written took longer than Wait),
// when it leaves at once, since holding it would only add delay. Once that
// frame has been written the batch leaves, except in a saturated room
// (frames of SaturatedFrame messages or more on average), where it waits as
// long again as that frame took to write (HoldFactor). An idle room's last
// frame was written long ago, so its batch leaves at once. A batch never
// waits past Wait after the last frame left.
//
// A Pacer is not safe for concurrent use: the hub goroutine alone uses it.
type Pacer struct {
	// wait bounds how long a batch waits after the last frame left.
	wait time.Duration
	// sending is the last frame sent, while it may still be being written
	// (nil once written).
	sending *Frame
	// sentAt is when the last frame left, writtenAt when the Pacer saw it
	// written (zero while it is in flight): the time between them is what
	// writing a frame to the room costs now.
	sentAt, writtenAt time.Time
	// unwritten holds the frames sent but not yet written (down to their
	// stragglers), oldest first, and lastWrite is how long the last of
	// them to be written took: longer than wait means the writers are
	// behind.
	unwritten []*Frame
	lastWrite time.Duration
	// perFrame is the average number of messages per frame sent
	// (exponential, FrameAverageWeight).
	perFrame float64
}

// NewPacer returns the rule for a room that holds a batch at most wait
// after the frame before it left. wait must be positive; a room that does
// not batch needs no Pacer.
func NewPacer(wait time.Duration) *Pacer { return &Pacer{wait: wait} }

// Sent records that f, armed and queued for every client, left at the time
// at. Call it once per frame of chat messages, after the hub's Release.
func (p *Pacer) Sent(f *Frame, at time.Time) {
	p.perFrame += FrameAverageWeight * (float64(f.N) - p.perFrame)
	p.sending, p.sentAt, p.writtenAt = f, at, time.Time{}
	if !f.Written() {
		f.Sent = at
		p.unwritten = append(p.unwritten, f)
	}
}

// Written records, at now, which frames sent have been written since the
// last call. Call it whenever the hub hears that a frame was written, and
// before Due, so that each frame's time to be written is measured when the
// hub hears of it.
func (p *Pacer) Written(now time.Time) {
	if f := p.sending; f != nil && f.Written() {
		p.sending, p.writtenAt = nil, now
	}
	// Writers write their queues in order, so frames come down to their
	// stragglers oldest first; a later one that is done early waits.
	n := 0
	for _, f := range p.unwritten {
		if !f.Written() {
			break
		}
		p.lastWrite = now.Sub(f.Sent)
		n++
	}
	if n > 0 {
		rest := copy(p.unwritten, p.unwritten[n:])
		clear(p.unwritten[rest:])
		p.unwritten = p.unwritten[:rest]
	}
}

// Due returns when a batch that is waiting at now may leave: at or before
// now means at once.
func (p *Pacer) Due(now time.Time) time.Time {
	if p.sending != nil && p.Behind() {
		return now
	}
	due := p.sentAt.Add(p.wait)
	if p.sending == nil {
		hold := p.writtenAt
		if p.Saturated() {
			hold = hold.Add(HoldFactor * p.writtenAt.Sub(p.sentAt))
		}
		if hold.Before(due) {
			due = hold
		}
	}
	return due
}

// Behind reports whether the writers are behind: the last frame to be
// written took longer than the bound.
func (p *Pacer) Behind() bool { return p.lastWrite > p.wait }

// Saturated reports whether the room's frames carry SaturatedFrame messages
// or more on average, so that it holds batches (HoldFactor).
func (p *Pacer) Saturated() bool { return p.perFrame >= SaturatedFrame }
