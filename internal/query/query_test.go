package query

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

// TestAskTakesAnswerGivenBeforeStop checks that an answer the hub gave
// just before it stopped reaches the caller. The answer and the hub's end
// are both ready before Ask looks; whenever the question was taken (it sits
// in the buffered channel), Ask must return the answer, and otherwise
// ErrClosed.
func TestAskTakesAnswerGivenBeforeStop(t *testing.T) {
	taken := 0
	for range 200 {
		ch := make(chan int, 1)
		reply := make(chan string, 1)
		reply <- "answer"
		done := make(chan struct{})
		close(done)
		a, err := Ask(context.Background(), done, ch, 1, reply, nil)
		switch {
		case len(ch) == 1:
			taken++
			if err != nil || a != "answer" {
				t.Fatalf("question taken and answered before the stop: Ask = %q, %v; want the answer", a, err)
			}
		case !errors.Is(err, ErrClosed):
			t.Fatalf("question not taken by a stopped hub: Ask = %q, %v; want ErrClosed", a, err)
		}
	}
	if taken == 0 {
		t.Fatal("Ask never handed the question over in 200 tries; the test proves nothing")
	}
}

// TestAskEnds checks every way Ask ends without an answer: the hub stopped
// before or after taking the question, the caller's ctx ended before or
// after; and that undo runs exactly when the hub answered a caller whose
// ctx had ended. What the hub does after taking the question happens once
// the caller waits for the answer.
func TestAskEnds(t *testing.T) {
	tests := []struct {
		name string
		// takes says the hub takes the question; then says what it, or
		// the caller's ctx, does next, in order: "cancel", "stop",
		// "answer".
		takes    bool
		then     []string
		cancel   bool // the ctx is cancelled before Ask
		undo     bool
		wantErr  error
		wantUndo bool
	}{
		{"stopped before taking", false, []string{"stop"}, false, false, ErrClosed, false},
		{"ctx ended before taking", false, nil, true, true, context.Canceled, false},
		{"stopped after taking", true, []string{"stop"}, false, true, ErrClosed, false},
		{"ctx ended after taking, no undo", true, []string{"cancel"}, false, false, context.Canceled, false},
		{"ctx ended, then answered", true, []string{"cancel", "answer"}, false, true, context.Canceled, true},
		{"ctx ended, then stopped", true, []string{"cancel", "stop"}, false, true, context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				ch := make(chan int)
				reply := make(chan int, 1)
				done := make(chan struct{})
				if tt.cancel {
					cancel()
				}
				if tt.takes {
					go func() { <-ch }()
				}
				undone := false
				var undo func()
				if tt.undo {
					undo = func() { undone = true }
				}
				var err error
				asked := make(chan struct{})
				go func() {
					_, err = Ask(ctx, done, ch, 7, reply, undo)
					close(asked)
				}()
				synctest.Wait() // the caller waits, for the hub or for the answer
				for _, step := range tt.then {
					switch step {
					case "cancel":
						cancel()
					case "stop":
						close(done)
					case "answer":
						reply <- 7
					}
					synctest.Wait()
				}
				<-asked
				if !errors.Is(err, tt.wantErr) || undone != tt.wantUndo {
					t.Errorf("Ask = %v, undo ran %v; want %v, %v", err, undone, tt.wantErr, tt.wantUndo)
				}
			})
		})
	}
}

// TestCall checks that Call has the hub run the function in the hub's
// goroutine, and returns once it has.
func TestCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := make(chan *Func)
		done := make(chan struct{})
		hubState := 41
		go func() {
			for f := range ch {
				f.Answer()
			}
		}()
		var got int
		if err := Call(t.Context(), done, ch, func() { hubState++; got = hubState }, nil); err != nil || got != 42 {
			t.Errorf("Call = %v, got %d; want nil, 42", err, got)
		}
		close(ch)
	})
}
