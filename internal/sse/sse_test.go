package sse

import (
	"strings"
	"testing"
	"time"
)

// newlines turns CRLF and CR line ends into LF, as a parser sees them.
var newlines = strings.NewReplacer("\r\n", "\n", "\r", "\n")

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"data only", Event{Data: []byte("hello")}, "data: hello\n\n"},
		{"id and data", Event{ID: "7-3", Data: []byte(`{"a":1}`)}, "id: 7-3\ndata: {\"a\":1}\n\n"},
		{"all fields", Event{Type: "reset", ID: "1-0", Retry: 1500 * time.Millisecond, Data: []byte("x")}, "event: reset\nid: 1-0\nretry: 1500\ndata: x\n\n"},
		{"id only", Event{ID: "5-9", Retry: time.Second}, "id: 5-9\nretry: 1000\n\n"},
		{"LF splits data", Event{Data: []byte("a\nb")}, "data: a\ndata: b\n\n"},
		{"CRLF splits data", Event{Data: []byte("a\r\nb")}, "data: a\ndata: b\n\n"},
		{"CR splits data", Event{Data: []byte("a\rb")}, "data: a\ndata: b\n\n"},
		{"trailing newline kept", Event{Data: []byte("a\n")}, "data: a\ndata: \n\n"},
		{"blank lines kept", Event{Data: []byte("\n\n")}, "data: \ndata: \ndata: \n\n"},
		{"forged event stays data", Event{Data: []byte("x\n\nid: 99\nevent: reset\ndata: evil")}, "data: x\ndata: \ndata: id: 99\ndata: event: reset\ndata: data: evil\n\n"},
		{"newline in id removed", Event{ID: "1\n\ndata: evil", Data: []byte("x")}, "id: 1data: evil\ndata: x\n\n"},
		{"NUL in id removed", Event{ID: "1\x002", Data: []byte("x")}, "id: 12\ndata: x\n\n"},
		{"CR in type removed", Event{Type: "a\rb", Data: []byte("x")}, "event: ab\ndata: x\n\n"},
		{"colon at start of data", Event{Data: []byte(": not a comment")}, "data: : not a comment\n\n"},
		{"empty event", Event{}, "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendEvent(nil, tt.ev))
			if got != tt.want {
				t.Errorf("AppendEvent(%+v) = %q, want %q", tt.ev, got, tt.want)
			}
			// The browser's parser must get back exactly the data.
			if len(tt.ev.Data) > 0 {
				evs := parseAll(t, got)
				want := newlines.Replace(string(tt.ev.Data))
				if len(evs) != 1 || string(evs[0].Data) != want {
					t.Errorf("parse(AppendEvent(%+v)) = %+v, want one event with data %q", tt.ev, evs, want)
				}
			}
		})
	}
}

// parseAll returns the events a browser would dispatch from the stream s.
func parseAll(t *testing.T, s string) []Event {
	t.Helper()
	r := NewReader(strings.NewReader(s))
	var out []Event
	for {
		ev, err := r.NextEvent()
		if err != nil {
			return out
		}
		out = append(out, ev)
	}
}
