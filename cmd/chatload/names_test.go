package main

import (
	"strings"
	"testing"
)

// TestPresenceAccounting checks that presence and typing events are counted
// with their size on the wire, apart from messages, and move no id.
func TestPresenceAccounting(t *testing.T) {
	r := &loadRun{runTag: "rT", maxMsgs: 8, lat: newShardedHist(1), srvLat: newShardedHist(1)}
	r.marker = []byte(`"content":"load rT `)
	s := &subscriber{r: r, lat: r.lat.shard(0), srvLat: r.srvLat.shard(0)}
	s.parser = newSSEParser(s.onEvent)
	pres := "event: presence\ndata: {\"people\":[],\"anonymous\":1,\"people_total\":0}\n\n"
	typing := "event: typing\ndata: {\"typing\":[\"a\"]}\n\n"
	stream := "id: 5-0\nretry: 1000\n\n" + pres + typing + pres +
		"id: 5-1\ndata: {\"id\":\"5-1\",\"username\":\"u\",\"content\":\"load rT 1000000 0\",\"time\":\"x\"}\n\n"
	if err := s.parser.feed([]byte(stream)); err != nil {
		t.Fatal(err)
	}
	if s.presence != 2 || s.presenceBytes != int64(2*len(pres)) || s.typing != 1 || s.typingBytes != int64(len(typing)) {
		t.Errorf("presence %d (%d bytes), typing %d (%d bytes); want 2 (%d), 1 (%d)",
			s.presence, s.presenceBytes, s.typing, s.typingBytes, 2*len(pres), len(typing))
	}
	if s.events != 1 || s.otherTypes != 0 || s.delivered.Load() != 1 || s.badEvents != 0 {
		t.Errorf("events %d, other types %d, delivered %d, bad %d; want 1, 0, 1, 0", s.events, s.otherTypes, s.delivered.Load(), s.badEvents)
	}
	r.subs = []*subscriber{s}
	rep := &report{SubsReady: 1}
	rep.fill(r, 0, 0)
	if rep.PresenceEvents != 2 || rep.PresencePerStream != 2 || rep.PresenceBytesPerStream != float64(2*len(pres)) || rep.PresenceMaxPerStream != 2 {
		t.Errorf("report: %d presence events, %.1f per stream, %.0f bytes per stream, max %d", rep.PresenceEvents, rep.PresencePerStream, rep.PresenceBytesPerStream, rep.PresenceMaxPerStream)
	}
	var out strings.Builder
	rep.writeText(&out)
	if !strings.Contains(out.String(), "presence    2 events (2.0 per stream, at most 2)") {
		t.Errorf("summary lacks the presence line:\n%s", out.String())
	}
}
