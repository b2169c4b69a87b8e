//go:build unix

package stream

import (
	"errors"
	"net"
	"syscall"
)

// peerGone looks at the socket beneath c without waiting: one
// recv(MSG_PEEK|MSG_DONTWAIT), which takes nothing from it. It reports
// gone when the peer has closed or reset its end or sent anything (a
// reader sends nothing after its request), and ok false when c has no TCP
// socket to look at.
func peerGone(c net.Conn) (gone, ok bool) {
	tc := tcpConn(c)
	if tc == nil {
		return false, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false, false
	}
	var buf [1]byte
	var recvErr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, recvErr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	if err != nil {
		return true, true // the connection is closed
	}
	waiting := errors.Is(recvErr, syscall.EAGAIN) || errors.Is(recvErr, syscall.EWOULDBLOCK) || errors.Is(recvErr, syscall.EINTR)
	return !waiting, true
}
