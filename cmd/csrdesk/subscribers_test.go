package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb/rdbtest"
)

// An import that Redis stops midway (maxmemory reached) ends saying file:line where it stopped and how many rows
// it stored; the same command run again finishes it and says what was there already.
func TestSubscribersImportStopsAndResumes(t *testing.T) {
	srv := rdbtest.Own(t)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	e := env("CSRDESK_REDIS_URL", srv.URL(0))
	if _, _, err := runCmd(t, e, "lists", "create", "events"); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("email,name\n")
	const n = 20000
	for i := range n {
		fmt.Fprintf(&b, "p%05d@example.com,Person %d\n", i, i)
	}
	file := filepath.Join(t.TempDir(), "people.csv")
	os.WriteFile(file, []byte(b.String()), 0o644)
	info, _ := rc.Info(ctx, "memory").Result()
	var used int64
	fmt.Sscanf(info[strings.Index(info, "used_memory:")+len("used_memory:"):], "%d", &used)
	rc.ConfigSet(ctx, "maxmemory", fmt.Sprint(used+4<<20)) // room for a few thousand rows
	out, _, err := runCmd(t, e, "subscribers", "import", file, "--list", "events", "--confirmed")
	var line, stored int
	if err == nil {
		t.Fatalf("import into a full Redis succeeded:\n%s", out)
	}
	if _, serr := fmt.Sscanf(strings.TrimPrefix(err.Error(), file), ":%d: import stopped here, %d rows stored before it", &line, &stored); serr != nil || stored == 0 || line != stored+2 ||
		!strings.Contains(err.Error(), "run the same command again to finish it") || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("the error does not say where it stopped: %v (%v)", err, serr)
	}
	if !strings.Contains(out, fmt.Sprintf("events: %d added, 0 updated, 0 not imported", stored)) {
		t.Errorf("the report so far:\n%s", out)
	}
	rc.ConfigSet(ctx, "maxmemory", "0")
	out, _, err = runCmd(t, e, "subscribers", "import", file, "--list", "events", "--confirmed")
	if want := fmt.Sprintf("events: %d added, 0 updated, %d already there as given, 0 not imported", n-stored, stored); err != nil || !strings.Contains(out, want) {
		t.Errorf("the re-run: %v\n%s\nwant %q", err, out, want)
	}
	if m, _ := rc.ZCard(ctx, "csrdesk:{subs}:list:events").Result(); m != n {
		t.Errorf("%d members, want %d", m, n)
	}
}
