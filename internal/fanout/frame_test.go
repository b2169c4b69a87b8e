package fanout

import "testing"

// TestFrameWrittenAtSlack checks that a frame counts as written, and
// signals once, when its readers have come down to its stragglers.
func TestFrameWrittenAtSlack(t *testing.T) {
	tests := []struct {
		name    string
		queues  int
		release int // releases before the hub's own
		want    int // releases by readers at which it counts as written
	}{
		{"one reader", 1, 1, 1},
		{"below the straggler share", StragglerShare - 1, StragglerShare - 1, StragglerShare - 1},
		{"two stragglers", 2 * StragglerShare, 2*StragglerShare - 2, 2*StragglerShare - 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			written := make(chan struct{}, 1)
			f := &Frame{N: 1}
			f.Arm(tt.queues, written)
			f.Release() // the hub is done queueing
			for i := 1; i <= tt.release; i++ {
				if f.Written() && i <= tt.want {
					t.Fatalf("written after %d releases, want %d", i-1, tt.want)
				}
				f.Release()
			}
			if !f.Written() {
				t.Fatalf("not written after %d releases", tt.release)
			}
			select {
			case <-written:
			default:
				t.Fatal("no signal on written")
			}
			select {
			case <-written:
				t.Fatal("a second signal")
			default:
			}
		})
	}
}

// TestUnarmedFrameIsNotCounted checks that releasing a frame the hub never
// armed (a presence event) signals nothing and does not panic.
func TestUnarmedFrameIsNotCounted(t *testing.T) {
	f := &Frame{Data: []byte("event: presence\n\n")}
	f.Release()
	f.Release()
	if Tick.Written() != true {
		t.Error("the tick frame, never armed, must count as written")
	}
}
