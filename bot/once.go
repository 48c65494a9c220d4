package bot

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrInProgress is Once's answer to a delivery of an event another delivery is handling now: the platform should
// deliver it again later.
var ErrInProgress = errors.New("the same event is being handled by another delivery")

// Once runs fn for one platform event (a Telegram update, a Slack event), to completion at most once however
// often and to however many processes the platform delivers it. The first delivery marks key in progress for
// 30 seconds, then done for two days once fn succeeds; a failure clears the mark, so that the platform's next
// delivery runs fn again, and a process that dies in between leaves a mark that soon expires.
func Once(ctx context.Context, rc redis.UniversalClient, key string, fn func(context.Context) error) error {
	first, err := rc.SetNX(ctx, key, "working", 30*time.Second).Result()
	if err != nil {
		return err
	}
	if !first {
		switch state, err := rc.Get(ctx, key).Result(); {
		case err == nil && state == "done":
			return nil
		case err == nil || errors.Is(err, redis.Nil):
			// Working, or cleared by a try that failed just now: the platform must come again.
			return ErrInProgress
		default:
			return err
		}
	}
	if err := fn(ctx); err != nil {
		rc.Del(context.WithoutCancel(ctx), key)
		return err
	}
	return rc.Set(context.WithoutCancel(ctx), key, "done", 48*time.Hour).Err()
}
