package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// postTimeout bounds one POST /post round trip.
const postTimeout = 10 * time.Second

// postResults collects what the posting workers did.
type postResults struct {
	mu       sync.Mutex
	byStatus map[string]int // failures by status code or "error"

	attempted atomic.Int64
	ok        atomic.Int64
	failed    atomic.Int64
	firstSend atomic.Int64 // Unix ns
	lastAck   atomic.Int64 // Unix ns

	// acks[n] is the id the server gave message n, zero if not acknowledged.
	// Each slot is written by one worker and read after all have exited.
	acks []msgID
	rtt  hist // POST round trip, µs
}

// fail records a failed post.
func (pr *postResults) fail(key string) {
	pr.failed.Add(1)
	pr.mu.Lock()
	pr.byStatus[key]++
	pr.mu.Unlock()
}

// runPosters posts messages 0..maxMsgs-1 at rate per second from the given
// number of workers, starting now, until all are sent, the duration has
// passed or ctx is done. Message n is due at start + n/rate; a worker that
// is behind sends at once.
func (r *loadRun) runPosters(ctx context.Context, client *http.Client) {
	start := time.Now()
	deadline := start.Add(r.cfg.duration)
	// Workers that fall behind keep sending due messages only this long
	// after the posting time.
	lateLimit := deadline.Add(max(time.Second, r.cfg.duration/10))
	interval := float64(time.Second) / r.cfg.rate
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range r.cfg.posters {
		wg.Go(func() {
			body := make([]byte, 0, 160)
			for {
				n := next.Add(1) - 1
				if n >= int64(r.maxMsgs) {
					return
				}
				due := start.Add(time.Duration(float64(n) * interval))
				if !due.Before(deadline) || time.Now().After(lateLimit) {
					return
				}
				if d := time.Until(due); d > 0 {
					t := time.NewTimer(d)
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				} else if ctx.Err() != nil {
					return
				}
				body = r.postOne(ctx, client, w, int(n), body)
			}
		})
	}
	wg.Wait()
}

// postOne sends message n and records the answer. It returns body for reuse.
func (r *loadRun) postOne(ctx context.Context, client *http.Client, worker, n int, body []byte) []byte {
	pr := &r.posts
	sent := time.Now()
	sentNs := sent.UnixNano()
	pr.firstSend.CompareAndSwap(0, sentNs)
	r.firstPost.CompareAndSwap(0, sentNs)
	body = append(body[:0], `{"username":"chatload-`...)
	body = strconv.AppendInt(body, int64(worker), 10)
	body = append(body, `","content":"load `...)
	body = append(body, r.runTag...)
	body = append(body, ' ')
	body = strconv.AppendInt(body, sentNs, 10)
	body = append(body, ' ')
	body = strconv.AppendInt(body, int64(n), 10)
	body = append(body, `"}`...)
	pr.attempted.Add(1)

	ctx, cancel := context.WithTimeout(ctx, postTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.postTargets[worker%len(r.postTargets)].postURL, bytes.NewReader(body))
	if err != nil {
		pr.fail("error")
		return body
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		pr.fail("error")
		r.noteStreamError(fmt.Errorf("post: %w", err))
		return body
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	now := time.Now()
	pr.rtt.add(micros(now.Sub(sent).Nanoseconds()))
	if resp.StatusCode != http.StatusCreated || err != nil {
		pr.fail(strconv.Itoa(resp.StatusCode))
		return body
	}
	raw, ok := jsonStringField(answer, keyID)
	id, ok2 := parseMsgID(raw)
	if !ok || !ok2 {
		pr.fail("bad-answer")
		return body
	}
	pr.acks[n] = id
	pr.ok.Add(1)
	for {
		last := pr.lastAck.Load()
		if now.UnixNano() <= last || pr.lastAck.CompareAndSwap(last, now.UnixNano()) {
			break
		}
	}
	return body
}
