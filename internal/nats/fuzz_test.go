package nats

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser, as a server's stream, and
// checks that it never panics, never returns a message over its limit, and
// that every header block it returns either parses or is refused, and
// encodes back to what it parsed to.
func FuzzParse(f *testing.F) {
	f.Add([]byte(serverStream))
	f.Add([]byte("MSG a 1 -1\r\n"))
	f.Add([]byte("HMSG a 1 99 12\r\nNATS/1.0\r\n\r\n\r\n"))
	const limit = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newParser(bytes.NewReader(data))
		p.maxPayload = limit
		for {
			fr, err := p.next()
			if err != nil {
				return
			}
			if fr.op != opMsg {
				continue
			}
			if n := len(fr.raw) + len(fr.msg.Data); n > limit+payloadSlack {
				t.Fatalf("message of %d bytes over the limit %d", n, limit+payloadSlack)
			}
			h, _, _, err := ParseHeader(fr.raw)
			if err != nil || h == nil {
				continue
			}
			enc, err := appendHeader(nil, h)
			if err != nil {
				continue
			}
			back, _, _, err := ParseHeader(enc)
			if err != nil || !reflect.DeepEqual(back, h) {
				t.Fatalf("header %v encoded as %q parsed back as %v, %v", h, enc, back, err)
			}
		}
	})
}
