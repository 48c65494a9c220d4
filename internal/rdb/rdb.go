// Package rdb opens csrdesk's connection to Redis, its one datastore.
package rdb

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open connects to the Redis server at rawURL and checks that it answers.
//
// The URL is redis://[user:password@]host:port[/db] (rediss:// for TLS). Several comma-separated hosts make a
// Cluster; a master query parameter (?master=mymaster) makes the hosts Sentinels for that master.
func Open(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	opts, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	c := newClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis at %s: %w", Redact(rawURL), err)
	}
	return c, nil
}

// ParseURL turns a Redis URL into go-redis options for a plain, Sentinel or Cluster client.
func ParseURL(rawURL string) (*redis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok || (scheme != "redis" && scheme != "rediss") {
		return nil, fmt.Errorf("redis URL %s: want redis://host:port/db (or rediss:// for TLS)", Redact(rawURL))
	}
	// net/url takes one host; cut the host list out and hand go-redis a URL with the first.
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostList, found := strings.Cut(authority, "@")
	if !found {
		userinfo, hostList = "", authority
	}
	hosts := strings.Split(hostList, ",")
	for i, h := range hosts {
		if h == "" {
			return nil, fmt.Errorf("redis URL %s: empty host", Redact(rawURL))
		}
		if !strings.Contains(h, ":") {
			hosts[i] = h + ":6379"
		}
	}
	single := scheme + "://"
	if found {
		single += userinfo + "@"
	}
	u, err := url.Parse(single + hosts[0] + tail)
	if err != nil {
		return nil, fmt.Errorf("redis URL %s: %w", Redact(rawURL), err)
	}
	q := u.Query()
	master := q.Get("master")
	q.Del("master")
	u.RawQuery = q.Encode()
	one, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("redis URL %s: %w", Redact(rawURL), err)
	}
	if len(hosts) > 1 && master == "" && one.DB != 0 {
		// A Cluster has database 0 only, and go-redis's Cluster client drops the number without a word: csrdesk
		// would share database 0 with whatever the /db was meant to keep it apart from.
		return nil, fmt.Errorf("redis URL %s: a Redis Cluster has only database 0, not %d", Redact(rawURL), one.DB)
	}
	return &redis.UniversalOptions{
		Addrs:      hosts,
		MasterName: master,
		DB:         one.DB,
		Username:   one.Username,
		Password:   one.Password,
		TLSConfig:  one.TLSConfig,
	}, nil
}

// Redact returns the URL without its password, for messages and logs.
func Redact(rawURL string) string {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return "(not a URL)"
	}
	userinfo, hosts, found := strings.Cut(rest, "@")
	if !found || strings.ContainsAny(userinfo, "/?") {
		return rawURL
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		userinfo = user + ":xxxxx"
	}
	return scheme + "://" + userinfo + "@" + hosts
}

// Scan calls fn for every key matching pattern whose type is typ ("stream", "list", "hash", ...), on every
// master of a Cluster or on the one server, one key at a time. It is for rare, whole-database work such as an
// erasure; fn gets the client that holds the key.
func Scan(ctx context.Context, c redis.UniversalClient, pattern, typ string, fn func(ctx context.Context, c *redis.Client, key string) error) error {
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.ScanType(ctx, 0, pattern, 500, typ).Iterator()
		for iter.Next(ctx) {
			if err := fn(ctx, c, iter.Val()); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	switch c := c.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex // fn need not be safe for concurrent use
		return c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
	case *redis.Client:
		return scan(ctx, c)
	}
	return fmt.Errorf("scan: unsupported Redis client %T", c)
}
