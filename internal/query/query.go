// Package query is the one path by which a goroutine asks the room's hub (a
// single goroutine that alone owns the room's state) a question and waits
// for its answer: hand the question over on the hub's channel, then wait
// for the answer, the hub's end or the caller's ctx, whichever comes first,
// so that no caller blocks forever and no answer the hub gave is lost.
package query

import (
	"context"
	"errors"
)

// ErrClosed means the hub has stopped without answering.
var ErrClosed = errors.New("chat room closed")

// Ask hands req to the hub on ch and waits for the hub's answer on reply,
// which the hub sends once (reply must be buffered, so that the hub never
// blocks on a caller that has gone). done is closed when the hub stops. Ask
// returns ErrClosed once the hub has stopped, except that an answer the hub
// gave just before it stopped is returned; or ctx's error if ctx ends first.
// When ctx ends after the hub has taken req and undo is not nil, Ask still
// waits for the answer (the hub answers promptly) and then calls undo, to
// take back what the hub did for a caller that has gone.
func Ask[Q, A any](ctx context.Context, done <-chan struct{}, ch chan<- Q, req Q, reply <-chan A, undo func()) (A, error) {
	var zero A
	select {
	case ch <- req:
	case <-done:
		return zero, ErrClosed
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case a := <-reply:
		return a, nil
	case <-done:
		select {
		case a := <-reply:
			return a, nil
		default:
			return zero, ErrClosed
		}
	case <-ctx.Done():
		if undo != nil {
			select {
			case <-reply:
				undo()
			case <-done:
			}
		}
		return zero, ctx.Err()
	}
}

// Func is a question the hub answers by running a function in its own
// goroutine, where the function may read and change what the hub alone
// owns; the function leaves its answer in the caller's variables.
type Func struct {
	run func()
	// reply receives one value once run has returned. Buffered (1).
	reply chan struct{}
}

// Answer runs the question's function and signals that it has; the hub
// calls it.
func (f *Func) Answer() {
	f.run()
	f.reply <- struct{}{}
}

// Call has the hub run run (see Func), through Ask on ch, and waits until
// it has; undo, if not nil, runs after it if ctx ended meanwhile.
func Call(ctx context.Context, done <-chan struct{}, ch chan<- *Func, run, undo func()) error {
	f := &Func{run: run, reply: make(chan struct{}, 1)}
	_, err := Ask(ctx, done, ch, f, f.reply, undo)
	return err
}
