// Package sse is the Server-Sent Events wire format, as the WHATWG HTML
// standard defines it in its "Server-sent events" section: AppendEvent
// encodes one event, and Reader parses a text/event-stream the way an
// EventSource does. It knows nothing of chat messages.
package sse

import (
	"strconv"
	"strings"
	"time"
)

// Event is one Server-Sent Event.
type Event struct {
	// Type is the event type; empty means the default "message".
	Type string
	// ID sets the client's last event id; empty sends no id field.
	ID string
	// Retry, when positive, is sent as the reconnection delay.
	Retry time.Duration
	// Data is the payload; each line of it becomes one "data:" field.
	Data []byte
}

// fieldSanitizer removes the characters that would end an SSE field early
// or make a browser ignore it.
var fieldSanitizer = strings.NewReplacer("\r", "", "\n", "", "\x00", "")

// AppendEvent appends the wire form of ev to dst, as the WHATWG
// server-sent events format defines it: "event:", "id:" and "retry:"
// fields as needed, one "data:" field per line of Data (a line ends at
// "\r\n", "\r" or "\n"), and a blank line. Nothing in Data can end the
// event early or add a field.
func AppendEvent(dst []byte, ev Event) []byte {
	if ev.Type != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, fieldSanitizer.Replace(ev.Type)...)
		dst = append(dst, '\n')
	}
	if ev.ID != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, fieldSanitizer.Replace(ev.ID)...)
		dst = append(dst, '\n')
	}
	if ev.Retry > 0 {
		dst = append(dst, "retry: "...)
		dst = strconv.AppendInt(dst, ev.Retry.Milliseconds(), 10)
		dst = append(dst, '\n')
	}
	if len(ev.Data) > 0 {
		data := ev.Data
		for {
			i := indexLineEnd(data)
			if i < 0 {
				dst = append(append(append(dst, "data: "...), data...), '\n')
				break
			}
			dst = append(append(append(dst, "data: "...), data[:i]...), '\n')
			if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			data = data[i+1:]
		}
	}
	return append(dst, '\n')
}

// indexLineEnd returns the index of the first '\r' or '\n' in b, or -1.
func indexLineEnd(b []byte) int {
	for i, ch := range b {
		if ch == '\r' || ch == '\n' {
			return i
		}
	}
	return -1
}
