package rdb

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Consumer returns a name for this process in a stream's consumer group, unique across hosts and restarts (a
// restarted process must not inherit the pending entries of its previous life under the same name).
func Consumer() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%d", host, os.Getpid(), time.Now().UnixNano())
}

// EnsureGroup creates a consumer group (and its stream) reading from start ("0" for everything, "$" for what
// comes next), or leaves an existing one alone.
func EnsureGroup(ctx context.Context, c redis.UniversalClient, stream, group, start string) error {
	err := c.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("consumer group %s on %s: %w", group, stream, err)
	}
	return nil
}
