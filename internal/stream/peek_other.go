//go:build !unix

package stream

import "net"

// peerGone reports ok false: without recv(MSG_PEEK) the probe reads with
// a short deadline instead (rawConn.alive).
func peerGone(net.Conn) (gone, ok bool) { return false, false }
