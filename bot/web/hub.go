package web

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/bot"
)

// hub tells the event streams open in this process that their Redis stream has news. One Pub/Sub connection
// serves every open page; the pages read the news themselves with XRANGE. A notice lost while Pub/Sub
// reconnects only delays news until the stream's next periodic read.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]bool
}

func newHub() *hub { return &hub{subs: map[string]map[chan struct{}]bool{}} }

// watch returns a channel that receives a value when topic has news, and a function to stop watching.
func (h *hub) watch(topic string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[topic] == nil {
		h.subs[topic] = map[chan struct{}]bool{}
	}
	h.subs[topic][ch] = true
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[topic], ch)
		if len(h.subs[topic]) == 0 {
			delete(h.subs, topic)
		}
		h.mu.Unlock()
	}
}

func (h *hub) notify(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[topic] {
		select {
		case ch <- struct{}{}:
		default: // already has a pending notice
		}
	}
}

// run relays notices from Redis until ctx is done, and returns only once its subscription is closed, so that
// Redis can be closed after it.
func (h *hub) run(ctx context.Context, rdb redis.UniversalClient) {
	for ctx.Err() == nil {
		h.relay(ctx, rdb)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// relay relays notices from one subscription until ctx is done or the subscription's channel closes. A
// subscription's channel does not close when ctx ends, so relay watches ctx itself.
func (h *hub) relay(ctx context.Context, rdb redis.UniversalClient) {
	ps := rdb.Subscribe(ctx, bot.NotifyChannel)
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			h.notify(msg.Payload)
		}
	}
}
