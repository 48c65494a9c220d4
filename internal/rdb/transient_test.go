package rdb

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// serverReply is a reply of the server as go-redis gives it (a redis.Error).
type serverReply string

func (e serverReply) Error() string { return string(e) }
func (serverReply) RedisError()     {}

func TestTransient(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("send to web chat: %w", serverReply("CLUSTERDOWN The cluster is down")), true},
		{serverReply("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{redis.Nil, false},
		{serverReply("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{redis.ErrCrossSlot, false},
		{errors.New("CLUSTERDOWN, but not from the server"), false},
	} {
		if got := transient(tt.err); got != tt.want {
			t.Errorf("transient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
