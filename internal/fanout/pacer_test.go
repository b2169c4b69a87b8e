package fanout

import (
	"fmt"
	"testing"
	"time"
)

// wait is the bound the pacer tests use.
const wait = 50 * time.Millisecond

// step is one event in a pacer test, at a time counted from the test's
// start: a frame of n messages leaves (send), frame i is written by its one
// reader (write, which the hub hears of at once), or the test asks when a
// batch waiting now is due (due, want: the time it is due, counted from the
// start), or asks the same and wants at once (now).
type step struct {
	at   time.Duration
	op   string
	n    int           // send: messages in the frame; write: its index
	want time.Duration // due: when the batch is due
}

// send, write, due and now build steps.
func send(at time.Duration, n int) step  { return step{at: at, op: "send", n: n} }
func write(at time.Duration, i int) step { return step{at: at, op: "write", n: i} }
func due(at, want time.Duration) step    { return step{at: at, op: "due", want: want} }
func now(at time.Duration) step          { return step{at: at, op: "now"} }

// TestPacerRule drives the batching rule through its cases with clock
// values given by hand, the way the hub calls it: Sent when a frame
// leaves, Written when a frame has been written, Due when a batch waits.
func TestPacerRule(t *testing.T) {
	// saturate is three frames of four messages, each written 1ms after
	// it left: the average reaches SaturatedFrame with the third.
	saturate := []step{send(0, 4), write(time.Millisecond, 0), send(2*time.Millisecond, 4), write(3*time.Millisecond, 1), send(4*time.Millisecond, 4), write(5*time.Millisecond, 2)}
	tests := []struct {
		name  string
		steps []step
	}{
		{"idle room: at once", []step{now(0)}},
		{"frame long written: at once", []step{send(0, 1), write(time.Millisecond, 0), now(time.Second)}},
		{"frame in flight: when it is written, at most wait after it left", []step{send(0, 1), due(10*time.Millisecond, wait)}},
		{"frame written: at once", []step{send(0, 1), due(5*time.Millisecond, wait), write(10*time.Millisecond, 0), now(10 * time.Millisecond)}},
		{"frame written at the instant it left: at once", []step{send(0, 1), write(0, 0), now(0)}},
		{"two frames of four are not yet saturated", []step{send(0, 4), write(time.Millisecond, 0), send(2*time.Millisecond, 4), write(12*time.Millisecond, 1), now(12 * time.Millisecond)}},
		{"saturated: held as long again as the frame took", append(saturate[:6:6], send(10*time.Millisecond, 4), write(20*time.Millisecond, 3), due(20*time.Millisecond, 30*time.Millisecond))},
		{"saturated, slow frame: held no later than wait after it left", append(saturate[:6:6], send(10*time.Millisecond, 4), write(50*time.Millisecond, 3), due(50*time.Millisecond, 10*time.Millisecond+wait))},
		{"behind: at once while a frame is in flight", []step{send(0, 1), write(2*wait, 0), send(2*wait, 1), now(2*wait + time.Millisecond)}},
		{"caught up: waits again", []step{send(0, 1), write(2*wait, 0), send(2*wait, 1), write(2*wait+time.Millisecond, 1), send(2*wait+2*time.Millisecond, 1), due(2*wait+3*time.Millisecond, 2*wait+2*time.Millisecond+wait)}},
		{"a later frame written first does not end behind", []step{send(0, 1), write(2*wait, 0), send(2*wait, 1), send(2*wait+time.Millisecond, 1), send(2*wait+2*time.Millisecond, 1), write(2*wait+3*time.Millisecond, 2), now(2*wait + 4*time.Millisecond)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			p := NewPacer(wait)
			signal := make(chan struct{}, 1)
			var frames []*Frame
			for i, s := range tt.steps {
				at := start.Add(s.at)
				switch s.op {
				case "send":
					f := &Frame{N: s.n}
					f.Arm(1, signal)
					f.Release() // the hub is done queueing
					p.Sent(f, at)
					frames = append(frames, f)
				case "write":
					frames[s.n].Release()
					p.Written(at)
				case "due":
					p.Written(at)
					if got := p.Due(at); got.Sub(start) != s.want {
						t.Errorf("step %d: due at %v, want %v", i, got.Sub(start), s.want)
					}
				case "now":
					p.Written(at)
					if got := p.Due(at); got.After(at) {
						t.Errorf("step %d at %v: due at %v, want at once", i, s.at, got.Sub(start))
					}
				}
			}
		})
	}
}

// TestPacerSaturation checks the average of messages per frame: one or two
// large frames do not make the room saturated, three do, and a few frames
// of one message bring it back.
func TestPacerSaturation(t *testing.T) {
	p := NewPacer(wait)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sent := func(n int) {
		f := &Frame{N: n}
		f.Arm(0, nil)
		f.Release()
		p.Sent(f, now)
	}
	var got []bool
	for _, n := range []int{4, 4, 4, 4, 1, 1, 1} {
		sent(n)
		got = append(got, p.Saturated())
	}
	if want := "[false false true true true false false]"; fmt.Sprint(got) != want {
		t.Errorf("saturated after frames of 4, 4, 4, 4, 1, 1, 1: %v, want %s", got, want)
	}
}

// TestPacerForgetsWrittenFrames checks that the Pacer keeps no frame once
// it has been written, so a busy room's frames are not held in memory.
func TestPacerForgetsWrittenFrames(t *testing.T) {
	p := NewPacer(wait)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var frames []*Frame
	for range 3 {
		f := &Frame{N: 1}
		f.Arm(1, make(chan struct{}, 1))
		f.Release()
		p.Sent(f, now)
		frames = append(frames, f)
	}
	for _, f := range frames {
		f.Release()
	}
	p.Written(now)
	if len(p.unwritten) != 0 || p.sending != nil {
		t.Errorf("after every frame was written: %d unwritten, sending %v; want none", len(p.unwritten), p.sending)
	}
	if tail := p.unwritten[:cap(p.unwritten)]; len(tail) > 0 && tail[0] != nil {
		t.Error("a written frame is still referenced from the unwritten queue's spare capacity")
	}
}
