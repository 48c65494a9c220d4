// Package rdb opens csrdesk's connection to Redis, its one datastore.
package rdb

import (
	"context"
	"fmt"
	"net/url"
	"strings"
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
	c := redis.NewUniversalClient(opts)
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
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL %s: %w", Redact(rawURL), err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis URL %s: scheme must be redis or rediss", Redact(rawURL))
	}
	hosts := strings.Split(u.Host, ",")
	master := u.Query().Get("master")
	// go-redis parses one host; hand it the first and copy the rest of the settings.
	single := *u
	single.Host = hosts[0]
	q := single.Query()
	q.Del("master")
	single.RawQuery = q.Encode()
	one, err := redis.ParseURL(single.String())
	if err != nil {
		return nil, fmt.Errorf("redis URL %s: %w", Redact(rawURL), err)
	}
	for i, h := range hosts {
		if !strings.Contains(h, ":") {
			hosts[i] = h + ":6379"
		}
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
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
