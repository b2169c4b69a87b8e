package jetstream

import (
	"errors"
	"strings"
	"time"
)

// errNotJetStream is returned by parseAckReply for a reply subject that is
// not a JetStream delivery's.
var errNotJetStream = errors.New("not a JetStream delivery")

// deliveryMeta is what a JetStream delivery's reply subject says about it.
type deliveryMeta struct {
	stream, consumer string
	// delivered is how often this message was delivered.
	delivered uint64
	// streamSeq and consumerSeq are the message's sequence in the stream
	// and in the consumer's deliveries.
	streamSeq, consumerSeq uint64
	// time is when the stream stored the message.
	time time.Time
	// pending is how many messages the consumer had left to deliver after
	// this one.
	pending uint64
}

// parseAckReply parses a delivery's reply subject. The server sends one of
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
//	$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>]
//
// (9 tokens, or 11 or 12 and more), ts being nanoseconds since 1970.
func parseAckReply(reply string) (deliveryMeta, error) {
	var tok [13]string
	n := 0
	for rest := reply; ; n++ {
		if n == len(tok) {
			return deliveryMeta{}, errNotJetStream
		}
		var ok bool
		tok[n], rest, ok = strings.Cut(rest, ".")
		if !ok {
			n++
			break
		}
	}
	if n < 9 || n == 10 || tok[0] != "$JS" || tok[1] != "ACK" {
		return deliveryMeta{}, errNotJetStream
	}
	t := tok[2:n]
	if n >= 11 {
		t = tok[4:n] // skip domain and account
	}
	var nums [5]uint64
	for i := range nums {
		v, ok := parseUint(t[2+i])
		if !ok {
			return deliveryMeta{}, errNotJetStream
		}
		nums[i] = v
	}
	if t[0] == "" || t[1] == "" || nums[1] == 0 || nums[2] == 0 {
		return deliveryMeta{}, errNotJetStream
	}
	return deliveryMeta{
		stream: t[0], consumer: t[1],
		delivered: nums[0], streamSeq: nums[1], consumerSeq: nums[2],
		time: time.Unix(0, int64(nums[3])), pending: nums[4],
	}, nil
}

// parseUint parses a decimal number of 1 to 19 digits.
func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
