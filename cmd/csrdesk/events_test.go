package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// runEvents runs the events command (called directly until run dispatches to it).
func runEvents(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	cfg, err := parseConfig(getenv)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = eventsCommand(context.Background(), cfg, args, &out)
	return out.String(), err
}

func TestEventsCommand(t *testing.T) {
	e := env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_PUBLIC_URL", "https://desk.platform.example/")
	out, err := runEvents(t, e, "create", "--title", "EMO 2027, CSR day", "--start", "2027-09-13 09:00", "--end", "2027-09-13 17:00",
		"--tz", "Europe/Berlin", "--place", "Messe Hannover", "--organizer", "Anna Rossi <anna@example.it>")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id := strings.TrimSpace(out)
	if !regexp.MustCompile(`^[a-z2-7]{10}$`).MatchString(id) {
		t.Fatalf("create printed %q, want the id", out)
	}
	if out, err := runEvents(t, e); err != nil || !strings.Contains(out, id+"  2027-09-13 09:00 Europe/Berlin  EMO 2027, CSR day  0") {
		t.Errorf("list: %v\n%s", err, out)
	}

	out, err = runEvents(t, e, "update", id, "--start", "2027-09-14 10:00")
	if want := "event " + id + ": sequence 1, Tue 14 September 2027, 10:00–18:00 (Europe/Berlin)\n"; err != nil || out != want {
		t.Errorf("update --start (keeps the length) = %q, %v; want %q", out, err, want)
	}
	out, err = runEvents(t, e, "update", id, "--tz", "Europe/Lisbon", "--place", "")
	if want := "event " + id + ": sequence 2, Tue 14 September 2027, 10:00–18:00 (Europe/Lisbon)\n"; err != nil || out != want {
		t.Errorf("update --tz (keeps the wall times) = %q, %v; want %q", out, err, want)
	}

	out, err = runEvents(t, e, "show", id, "--lang", "de")
	if err != nil || !regexp.MustCompile(`(?m)^when: +Di\., 14\. September 2027, 10:00–18:00 Uhr \(Europe/Lisbon\)$`).MatchString(out) ||
		strings.Contains(out, "place:") || !regexp.MustCompile(`(?m)^google: +https://calendar\.google\.com/`).MatchString(out) {
		t.Errorf("show: %v\n%s", err, out)
	}
	out, err = runEvents(t, e, "show", "--ics", id)
	for _, want := range []string{"UID:" + id + "@desk.platform.example\r\n", "SEQUENCE:2\r\n", "DTSTART;TZID=Europe/Lisbon:20270914T100000\r\n",
		"SUMMARY:EMO 2027\\, CSR day\r\n", "ORGANIZER;CN=Anna Rossi:mailto:anna@example.it\r\n", "TZID:Europe/Lisbon\r\n"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("show --ics: %v: no %q in\n%s", err, want, out)
		}
	}
	local := env("CSRDESK_REDIS_URL", e("CSRDESK_REDIS_URL"))
	if out, err := runEvents(t, local, "show", "--ics", id); err != nil || !strings.Contains(out, "UID:"+id+"@csrdesk.local\r\n") {
		t.Errorf("show --ics without a public URL: %v\n%s", err, out)
	}
	if _, err := runEvents(t, e, "show", "nosuchid00"); err == nil || !strings.Contains(err.Error(), "event nosuchid00: not found") {
		t.Errorf("show of a missing event: %v", err)
	}
}

func TestEventsCommandUsage(t *testing.T) {
	e := env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)))
	create := func(extra ...string) []string {
		return append([]string{"create", "--title", "CSR day", "--start", "2027-03-09 09:00", "--end", "2027-03-09 17:00", "--tz", "Europe/Berlin"}, extra...)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "--title", "CSR day"}, "events create: --start, --end, --tz required"},
		{create("--tz", "Berlin"), `--tz "Berlin": want an IANA time zone`},
		{create("--start", "9 March 2027"), `--start: "9 March 2027": want a date and time like 2027-03-09 09:00`},
		{create("--start", "2027-03-28 02:30", "--end", "2027-03-28 05:00"), "--start: 2027-03-28 02:30 does not exist in Europe/Berlin"},
		{create("--end", "2027-03-09 08:00"), "--end 2027-03-09 08:00 is not after --start 2027-03-09 09:00"},
		{create("--url", "www.example.com"), `--url "www.example.com": want an http:// or https:// link`},
		{create("--organizer", "Anna"), `--organizer "Anna": want an address`},
		{create("--title", " "), "--title must not be empty"},
		{create("--colour", "red"), "flag provided but not defined: -colour"},
		{[]string{"update", "abcdefghij"}, "events update: nothing to change"},
		{[]string{"update", "--title", "x"}, "events update: want one event id"},
		{[]string{"show"}, "events show: want one event id"},
		{[]string{"delete", "x"}, "events: want no arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := runEvents(t, e, tc.args...)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want a usage error with %q", err, tc.want)
			}
		})
	}
	id, err := runEvents(t, e, create()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runEvents(t, e, "update", strings.TrimSpace(id), "--end", "2027-03-09 08:00"); err == nil || !strings.Contains(err.Error(), "end (2027-03-09 08:00) must be after start") {
		t.Errorf("update with the end before the start: %v", err)
	}
}
