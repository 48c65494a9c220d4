package rdb_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
	"csrdesk/internal/rdb/rdbtest"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url  string
		want redis.UniversalOptions
	}{
		{"redis://127.0.0.1:6391/2", redis.UniversalOptions{Addrs: []string{"127.0.0.1:6391"}, DB: 2}},
		{"redis://user:secret@redis.example:6380", redis.UniversalOptions{Addrs: []string{"redis.example:6380"}, Username: "user", Password: "secret"}},
		{"redis://a:7000,b:7001,c", redis.UniversalOptions{Addrs: []string{"a:7000", "b:7001", "c:6379"}}},
		{"redis://s1:26379,s2:26379/1?master=mymaster", redis.UniversalOptions{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", DB: 1}},
	}
	for _, tt := range tests {
		got, err := rdb.ParseURL(tt.url)
		if err != nil {
			t.Errorf("rdb.ParseURL(%q): %v", tt.url, err)
			continue
		}
		if diff := cmp.Diff(tt.want, *got, cmpopts.IgnoreUnexported(redis.UniversalOptions{})); diff != "" {
			t.Errorf("rdb.ParseURL(%q) (-want +got):\n%s", tt.url, diff)
		}
	}
	for _, bad := range []string{"http://x", "redis://[::1", "redis://h/notadb", "redis://a,,b"} {
		if _, err := rdb.ParseURL(bad); err == nil {
			t.Errorf("rdb.ParseURL(%q) accepted", bad)
		}
	}
	if got := rdb.Redact("redis://user:secret@h:1/0"); strings.Contains(got, "secret") {
		t.Errorf("Redact left the password in: %s", got)
	}
}

func TestOpen(t *testing.T) {
	srv := rdbtest.Own(t)
	c, err := rdb.Open(context.Background(), srv.URL(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := rdb.Open(context.Background(), "redis://127.0.0.1:1/0"); err == nil {
		t.Error("Open succeeded with no server")
	}
}
