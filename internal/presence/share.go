package presence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
)

// Bounds of the shares that the nodes of a cluster exchange.
const (
	// MaxShareNames is how many names a share lists at most; a node with
	// more counts the rest (Share.MorePeople), so every node still has
	// the room's totals. 5 000 names of 32 four-byte characters fit in
	// NATS's default 1 MiB message.
	MaxShareNames = 5000
	// MaxNodes is how many other nodes' shares a board merges; a share
	// from one more node is refused until one leaves.
	MaxNodes = 64
	// maxShareCount bounds every count in a share, so that the sums of
	// MaxNodes shares cannot overflow.
	maxShareCount = 1 << 24
)

// ErrTooManyNodes is SetRemote's error for a share from one node more than
// MaxNodes.
var ErrTooManyNodes = errors.New("presence: too many nodes")

// Share is one node's part of a room's presence, as the nodes of a cluster
// exchange it: the names on the node's streams with their stream counts
// (MaxShareNames of them at most, in roster order), the people and streams
// beyond those, the node's anonymous streams, and the names typing on the
// node. Its JSON is
//
//	{"people":[{"name":"alice","streams":2}],"anonymous":1,"more_people":0,"more_streams":0,"typing":["alice"]}
type Share struct {
	People      []Count  `json:"people"`
	Anonymous   int      `json:"anonymous"`
	MorePeople  int      `json:"more_people"`
	MoreStreams int      `json:"more_streams"`
	Typing      []string `json:"typing"`
}

// Count is one name of a share and the node's streams that carry it.
type Count struct {
	Name    string `json:"name"`
	Streams int    `json:"streams"`
}

// remoteShare is another node's share as a board keeps it.
type remoteShare struct {
	people                             map[string]int
	anonymous, morePeople, moreStreams int
	typing                             []string
}

// ParseShare decodes a share another node published and checks it: exactly
// the fields of a Share, at most MaxShareNames names and maxTyping typing
// names, each name once and accepted by valid (when not nil), every count
// positive (streams) or not negative (the others) and bounded, and as many
// more streams as more people at least. Anyone who may publish to the
// cluster's NATS account can write one, so nothing else is trusted.
func ParseShare(data []byte, valid func(name string) error) (*Share, error) {
	var s Share
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("share: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("share: data after the object")
	}
	switch {
	case len(s.People) > MaxShareNames:
		return nil, fmt.Errorf("share: %d names, more than %d", len(s.People), MaxShareNames)
	case len(s.Typing) > maxTyping:
		return nil, fmt.Errorf("share: %d typing names, more than %d", len(s.Typing), maxTyping)
	case !counted(s.Anonymous, 0) || !counted(s.MorePeople, 0) || !counted(s.MoreStreams, s.MorePeople):
		return nil, errors.New("share: a count out of range")
	}
	seen := make(map[string]bool, len(s.People))
	for _, c := range s.People {
		if err := checkName(c.Name, valid, seen); err != nil {
			return nil, err
		}
		if !counted(c.Streams, 1) {
			return nil, fmt.Errorf("share: %q has %d streams", c.Name, c.Streams)
		}
	}
	clear(seen)
	for _, name := range s.Typing {
		if err := checkName(name, valid, seen); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// counted reports whether n is a count from least to maxShareCount.
func counted(n, least int) bool { return n >= least && n <= maxShareCount }

// checkName checks one name of a share, and that seen does not have it
// yet (then adds it).
func checkName(name string, valid func(string) error, seen map[string]bool) error {
	if seen[name] {
		return fmt.Errorf("share: %q listed twice", name)
	}
	seen[name] = true
	if name == "" {
		return errors.New("share: an empty name")
	}
	if valid != nil {
		if err := valid(name); err != nil {
			return fmt.Errorf("share: %q: %w", name, err)
		}
	}
	return nil
}

// LocalShare returns this node's share as JSON: its streams (Local) and
// the names typing here.
func (b *Board) LocalShare() []byte {
	s := Share{Anonymous: b.Local.anonymous, People: []Count{}, Typing: b.typers.Names()}
	listed := b.Local.sorted[:min(len(b.Local.sorted), MaxShareNames)]
	for _, p := range listed {
		s.People = append(s.People, Count{Name: p.name, Streams: p.streams})
	}
	for _, p := range b.Local.sorted[len(listed):] {
		s.MorePeople++
		s.MoreStreams += p.streams
	}
	out, _ := json.Marshal(s) // cannot fail: strings and numbers
	return out
}

// Changes returns a channel that receives a value after this node's share
// changed (it holds one value at most: several changes may be signalled
// once). A cluster's node reads it to publish its share again.
func (b *Board) Changes() <-chan struct{} { return b.changes }

// localChanged signals a change of this node's share.
func (b *Board) localChanged() {
	select {
	case b.changes <- struct{}{}:
	default:
	}
}

// SetRemote merges node's share into the room's roster and typing set,
// in place of what node shared before, and marks the presence and typing
// events due where that changed them. A share from a node beyond MaxNodes
// others is refused with ErrTooManyNodes.
func (b *Board) SetRemote(node string, s *Share) error {
	old := b.remote[node]
	if old == nil {
		if len(b.remote) >= MaxNodes {
			return ErrTooManyNodes
		}
		old = &remoteShare{}
	}
	sh := &remoteShare{people: make(map[string]int, len(s.People)), anonymous: s.Anonymous,
		morePeople: s.MorePeople, moreStreams: s.MoreStreams}
	for _, c := range s.People {
		sh.people[c.Name] = c.Streams
	}
	if b.on {
		sh.typing = slices.Clone(s.Typing)
	}
	b.merge(old, sh)
	b.remote[node] = sh
	return nil
}

// DropRemote takes node's share out of the room's roster and typing set
// (the node left, or its share expired). It reports whether there was one.
func (b *Board) DropRemote(node string) bool {
	old := b.remote[node]
	if old == nil {
		return false
	}
	b.merge(old, &remoteShare{})
	delete(b.remote, node)
	return true
}

// Nodes returns how many nodes the roster counts: this one and those whose
// shares it merged.
func (b *Board) Nodes() int { return 1 + len(b.remote) }

// Totals returns the counts of this node's streams and of the room's.
func (b *Board) Totals() (local, room Totals) {
	room = b.Roster.Totals()
	room.Nodes = b.Nodes()
	return b.Local.Totals(), room
}

// merge changes the room's roster and typing set from what share old
// counted to what share sh counts.
func (b *Board) merge(old, sh *remoteShare) {
	r := b.Roster
	before := r.version
	for name, n := range sh.people {
		if o := old.people[name]; n > o {
			r.AddN(name, n-o)
		} else if n < o {
			r.RemoveN(name, o-n)
		}
	}
	for name, o := range old.people {
		if _, ok := sh.people[name]; !ok {
			r.RemoveN(name, o)
		}
	}
	r.AddN("", sh.anonymous-old.anonymous)
	r.RemoveN("", old.anonymous-sh.anonymous)
	r.Hide(sh.morePeople-old.morePeople, sh.moreStreams-old.moreStreams)
	if b.on && r.version != before {
		b.rosterGate.Changed()
	}
	if slices.Equal(old.typing, sh.typing) {
		return
	}
	before2 := maps.Clone(b.remoteTyping)
	for _, name := range old.typing {
		if b.remoteTyping[name]--; b.remoteTyping[name] <= 0 {
			delete(b.remoteTyping, name)
		}
	}
	for _, name := range sh.typing {
		b.remoteTyping[name]++
	}
	if !sameKeys(before2, b.remoteTyping) {
		b.typingGate.Changed()
	}
}

// sameKeys reports whether a and b have the same keys.
func sameKeys(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// typingJSON returns the room's typing set as a typing event's data: the
// names typing here and those other nodes' shares list, each once.
func (b *Board) typingJSON() []byte {
	if len(b.remoteTyping) == 0 {
		return b.typers.JSON(b.names)
	}
	names := b.typers.Names()
	for name := range b.remoteTyping {
		if _, here := b.typers.until[name]; !here {
			names = append(names, name)
		}
	}
	sortNames(names)
	return typingJSON(names, b.names)
}
