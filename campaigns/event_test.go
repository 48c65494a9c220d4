package campaigns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-ical"
	"github.com/google/go-cmp/cmp"
)

func mustZone(tb testing.TB, tz string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(tz)
	if err != nil {
		tb.Fatal(err)
	}
	return loc
}

// mustEvent returns an event on d from hh:00 to hh+8:00 in tz.
func mustEvent(tb testing.TB, tz string, y int, m time.Month, d, hh int) Event {
	tb.Helper()
	loc := mustZone(tb, tz)
	return Event{Title: "CSR day", TZ: tz, Start: time.Date(y, m, d, hh, 0, 0, 0, loc), End: time.Date(y, m, d, hh+8, 0, 0, 0, loc)}
}

// parseICS parses an .ics with an independent parser, checks its structure by encoding it again, and returns
// the calendar and its one VEVENT.
func parseICS(tb testing.TB, data []byte) (*ical.Calendar, *ical.Event) {
	tb.Helper()
	cal, err := ical.NewDecoder(bytes.NewReader(data)).Decode()
	if err != nil {
		tb.Fatalf("parse .ics: %v\n%s", err, data)
	}
	if err := ical.NewEncoder(&bytes.Buffer{}).Encode(cal); err != nil {
		tb.Fatalf("the .ics is not well formed: %v\n%s", err, data)
	}
	events := cal.Events()
	if len(events) != 1 {
		tb.Fatalf("%d events, want 1", len(events))
	}
	return cal, &events[0]
}

// validICS checks an event as the store would and returns its .ics for the domain platform.example.
func validICS(tb testing.TB, e Event) []byte {
	tb.Helper()
	if err := e.validate(); err != nil {
		tb.Fatal(err)
	}
	data, err := e.ICS("platform.example", time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func icsProp(tb testing.TB, e *ical.Event, name string) string {
	tb.Helper()
	s, err := e.Props.Text(name)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return s
}

func TestEventCreateUpdate(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t)
	clock := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	in := mustEvent(t, "Europe/Berlin", 2027, 3, 9, 9)
	in.Start = in.Start.UTC() // an instant in any zone; it is kept, and shown in the event's
	in.Place, in.Organizer = "Messe Hannover, Halle 5", "Anna Rossi <anna@example.it>"
	e, err := s.CreateEvent(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[a-z2-7]{10}$`).MatchString(e.ID) {
		t.Errorf("id %q: want 10 lower-case base32 characters", e.ID)
	}
	if e.Sequence != 0 || !e.Created.Equal(clock) || !e.Updated.IsZero() || e.Start.Location().String() != "Europe/Berlin" || !e.Start.Equal(in.Start) {
		t.Errorf("created %+v", e)
	}
	got, err := s.Event(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("stored event (-want +got):\n%s", diff)
	}

	clock = clock.Add(time.Hour)
	up, err := s.UpdateEvent(ctx, e.ID, func(e *Event) {
		e.Title = "CSR day 2027"
		e.ID, e.Sequence, e.Created = "other", 99, time.Time{} // not the caller's to change
	})
	if err != nil {
		t.Fatal(err)
	}
	want := *e
	want.Title, want.Sequence, want.Updated = "CSR day 2027", 1, clock
	if diff := cmp.Diff(&want, up); diff != "" {
		t.Errorf("updated event (-want +got):\n%s", diff)
	}
	if got, _ := s.Event(ctx, e.ID); got == nil || got.Sequence != 1 || got.Title != "CSR day 2027" {
		t.Errorf("stored after update: %+v", got)
	}

	if _, err := s.Event(ctx, "nosuchid00"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nosuchid00") {
		t.Errorf("missing event: %v", err)
	}
	if _, err := s.UpdateEvent(ctx, "nosuchid00", func(*Event) {}); !errors.Is(err, ErrNotFound) {
		t.Errorf("updating a missing event: %v", err)
	}

	earlier, err := s.CreateEvent(ctx, mustEvent(t, "Europe/Lisbon", 2027, 1, 20, 10))
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.Events(ctx)
	if err != nil || len(all) != 2 || all[0].ID != earlier.ID || all[1].ID != e.ID {
		t.Errorf("Events = %+v, %v; want %s then %s", all, err, earlier.ID, e.ID)
	}
}

func TestEventValidation(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t)
	ok := mustEvent(t, "Europe/Berlin", 2027, 3, 9, 9)
	for _, tc := range []struct {
		name   string
		change func(*Event)
		want   string
	}{
		{"no title", func(e *Event) { e.Title = "  " }, "title is required"},
		{"no zone", func(e *Event) { e.TZ = "" }, `tz: time zone ""`},
		{"unknown zone", func(e *Event) { e.TZ = "Europe/Atlantis" }, `tz: time zone "Europe/Atlantis"`},
		{"Local is not a zone name", func(e *Event) { e.TZ = "Local" }, `time zone "Local"`},
		{"no start", func(e *Event) { e.Start = time.Time{} }, "start and end are required"},
		{"end before start", func(e *Event) { e.End = e.Start.Add(-time.Hour) }, "end (2027-03-09 08:00) must be after start (2027-03-09 09:00)"},
		{"end at start", func(e *Event) { e.End = e.Start }, "must be after start"},
		{"url without scheme", func(e *Event) { e.URL = "meet.example.com/csr" }, `url "meet.example.com/csr"`},
		{"ftp url", func(e *Event) { e.URL = "ftp://example.com/x" }, "want an http:// or https:// link"},
		{"url with a space", func(e *Event) { e.URL = "https://example.com/a b" }, "want an http:// or https:// link"},
		{"bad organizer", func(e *Event) { e.Organizer = "Anna <anna>" }, `organizer "Anna <anna>"`},
		{"bad UTF-8", func(e *Event) { e.Description = "caf\xe9" }, "description is not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ok
			tc.change(&e)
			_, err := s.CreateEvent(ctx, e)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create: %v; want %s: ...%s...", err, ErrInvalid, tc.want)
			}
			created, err := s.CreateEvent(ctx, ok)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.UpdateEvent(ctx, created.ID, tc.change)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("update: %v; want %s: ...%s...", err, ErrInvalid, tc.want)
			}
			if got, _ := s.Event(ctx, created.ID); got == nil || got.Sequence != 0 || got.Title != ok.Title {
				t.Errorf("a refused update changed the event: %+v", got)
			}
		})
	}
	for _, good := range []func(*Event){
		func(e *Event) { e.URL = "https://meet.example.com/csr?id=1,2" },
		func(e *Event) { e.Organizer = "anna@example.it" },
		func(e *Event) { e.Organizer = `"Rossi, Anna" <anna@example.it>` },
		func(e *Event) { e.TZ = "UTC" },
	} {
		e := ok
		good(&e)
		if _, err := s.CreateEvent(ctx, e); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
}

func TestEventConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t)
	e, err := s.CreateEvent(ctx, mustEvent(t, "Europe/Berlin", 2027, 3, 9, 9))
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	seqs := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			up, err := s.UpdateEvent(ctx, e.ID, func(e *Event) { e.Description += fmt.Sprintf("[%d]", i) })
			if err != nil {
				t.Error(err)
				return
			}
			seqs[i] = up.Sequence
		})
	}
	wg.Wait()
	got, err := s.Event(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sequence != n || strings.Count(got.Description, "[") != n {
		t.Errorf("after %d concurrent updates: sequence %d, description %q", n, got.Sequence, got.Description)
	}
	sort.Ints(seqs)
	for i, seq := range seqs {
		if seq != i+1 {
			t.Fatalf("sequences returned %v: want 1..%d, each once", seqs, n)
		}
	}
}

func TestEventICS(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t)
	in := mustEvent(t, "Europe/Berlin", 2027, 3, 9, 9)
	in.Title, in.Description, in.Place = "EMO 2027", "Meet the platform team.", "Messe Hannover, Halle 5"
	in.URL, in.Organizer = "https://platform.example/emo", `"Rossi, Anna" <anna@example.it>`
	now := time.Date(2026, 11, 2, 10, 30, 0, 0, mustZone(t, "Europe/Rome"))
	s.now = func() time.Time { return now }
	e, err := s.CreateEvent(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	data, err := e.ICS("platform.example", now)
	if err != nil {
		t.Fatal(err)
	}
	cal, ev := parseICS(t, data)
	for name, want := range map[string]string{"PRODID": "-//csrdesk//EN", "VERSION": "2.0", "METHOD": "PUBLISH", "CALSCALE": "GREGORIAN"} {
		if p := cal.Props.Get(name); p == nil || p.Value != want {
			t.Errorf("calendar %s = %v, want %q", name, p, want)
		}
	}
	for name, want := range map[string]string{"UID": e.ID + "@platform.example", "SUMMARY": "EMO 2027", "DESCRIPTION": "Meet the platform team.",
		"LOCATION": "Messe Hannover, Halle 5", "STATUS": "CONFIRMED"} {
		if got := icsProp(t, ev, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]string{"SEQUENCE": "0", "DTSTAMP": "20261102T093000Z", "URL": "https://platform.example/emo",
		"CREATED": "20261102T093000Z", "LAST-MODIFIED": "20261102T093000Z"} {
		if p := ev.Props.Get(name); p == nil || p.Value != want {
			t.Errorf("%s = %+v, want %q", name, p, want)
		}
	}
	org := ev.Props.Get("ORGANIZER")
	if org == nil || org.Value != "mailto:anna@example.it" || org.Params.Get("CN") != "Rossi, Anna" {
		t.Errorf("ORGANIZER = %+v", org)
	}
	if p := ev.Props.Get("DTSTART"); p.Params.Get("TZID") != "Europe/Berlin" || p.Value != "20270309T090000" {
		t.Errorf("DTSTART = %+v, want local wall time with TZID", p)
	}

	up, err := s.UpdateEvent(ctx, e.ID, func(e *Event) { e.Start, e.End = e.Start.Add(time.Hour), e.End.Add(time.Hour); e.Place = "" })
	if err != nil {
		t.Fatal(err)
	}
	data, err = up.ICS("platform.example", now)
	if err != nil {
		t.Fatal(err)
	}
	_, ev2 := parseICS(t, data)
	seq, err := ev2.Props.Get("SEQUENCE").Int()
	if icsProp(t, ev2, "UID") != icsProp(t, ev, "UID") || err != nil || seq != 1 || ev2.Props.Get("DTSTART").Value != "20270309T100000" {
		t.Errorf("after an update: UID %q, SEQUENCE %d (%v), DTSTART %q; want UID %q, 1, 20270309T100000",
			icsProp(t, ev2, "UID"), seq, err, ev2.Props.Get("DTSTART").Value, icsProp(t, ev, "UID"))
	}
	if got := icsProp(t, ev2, "LOCATION"); got != "https://platform.example/emo" {
		t.Errorf("LOCATION without a place = %q, want the link", got)
	}
	if _, err := up.ICS("", now); !errors.Is(err, ErrInvalid) {
		t.Errorf("no domain: %v", err)
	}
}

// observance is a STANDARD or DAYLIGHT part of a VTIMEZONE.
type observance struct {
	kind, name string
	onset      time.Time // UTC
	wall       string    // DTSTART as written
	from, to   int       // seconds east of UTC
}

func parseOffset(tb testing.TB, s string) int {
	tb.Helper()
	if len(s) != 5 && len(s) != 7 || (s[0] != '+' && s[0] != '-') {
		tb.Fatalf("bad UTC offset %q", s)
	}
	n := func(i int) int { v, _ := strconv.Atoi(s[i : i+2]); return v }
	sec := n(1)*3600 + n(3)*60
	if len(s) == 7 {
		sec += n(5)
	}
	if s[0] == '-' {
		sec = -sec
	}
	return sec
}

// observances reads the VTIMEZONE with this TZID, without Go's zone database.
func observances(tb testing.TB, cal *ical.Calendar, tzid string) []observance {
	tb.Helper()
	var out []observance
	for _, c := range cal.Children {
		if c.Name != ical.CompTimezone || c.Props.Get(ical.PropTimezoneID).Value != tzid {
			continue
		}
		for _, o := range c.Children {
			wall, err := time.Parse("20060102T150405", o.Props.Get(ical.PropDateTimeStart).Value)
			if err != nil {
				tb.Fatal(err)
			}
			ob := observance{kind: o.Name, name: o.Props.Get(ical.PropTimezoneName).Value, wall: o.Props.Get(ical.PropDateTimeStart).Value,
				from: parseOffset(tb, o.Props.Get(ical.PropTimezoneOffsetFrom).Value), to: parseOffset(tb, o.Props.Get(ical.PropTimezoneOffsetTo).Value)}
			ob.onset = wall.Add(-time.Duration(ob.from) * time.Second)
			out = append(out, ob)
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no VTIMEZONE %q", tzid)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].onset.Before(out[j].onset) })
	return out
}

// resolveICS turns a DTSTART or DTEND into an instant through the calendar's VTIMEZONE (RFC 5545 3.6.5): an
// observance is in force from its onset to the next one's.
func resolveICS(tb testing.TB, cal *ical.Calendar, p *ical.Prop) time.Time {
	tb.Helper()
	if strings.HasSuffix(p.Value, "Z") {
		t, err := time.Parse("20060102T150405Z", p.Value)
		if err != nil {
			tb.Fatal(err)
		}
		return t
	}
	wall, err := time.Parse("20060102T150405", p.Value)
	if err != nil {
		tb.Fatal(err)
	}
	var at time.Time
	obs := observances(tb, cal, p.Params.Get("TZID"))
	for i, o := range obs {
		t := wall.Add(-time.Duration(o.to) * time.Second)
		inForce := !t.Before(o.onset) && (i == len(obs)-1 || t.Before(obs[i+1].onset))
		if inForce && (at.IsZero() || t.Before(at)) { // a wall time that occurs twice is the first one
			at = t
		}
	}
	if at.IsZero() {
		tb.Fatalf("no observance covers %s", p.Value)
	}
	return at
}

func TestEventICSTimeZones(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tz        string
		start     time.Time // the wall time, read in tz
		wantUTC   string    // the instant DTSTART must resolve to
		wantStart string    // DTSTART's value as written
		wantObs   []string  // kind dtstart from to name
	}{
		{"Berlin winter", "Europe/Berlin", time.Date(2027, 1, 20, 10, 0, 0, 0, time.UTC), "2027-01-20T09:00:00Z", "20270120T100000", []string{
			"STANDARD 20261025T030000 +0200 +0100 CET", "DAYLIGHT 20270328T020000 +0100 +0200 CEST", "STANDARD 20271031T030000 +0200 +0100 CET"}},
		{"Berlin summer", "Europe/Berlin", time.Date(2027, 7, 14, 10, 0, 0, 0, time.UTC), "2027-07-14T08:00:00Z", "20270714T100000", nil},
		{"Lisbon winter", "Europe/Lisbon", time.Date(2027, 11, 10, 10, 0, 0, 0, time.UTC), "2027-11-10T10:00:00Z", "20271110T100000", []string{
			"STANDARD 20261025T020000 +0100 +0000 WET", "DAYLIGHT 20270328T010000 +0000 +0100 WEST", "STANDARD 20271031T020000 +0100 +0000 WET"}},
		{"Lisbon summer", "Europe/Lisbon", time.Date(2027, 6, 10, 10, 0, 0, 0, time.UTC), "2027-06-10T09:00:00Z", "20270610T100000", nil},
		{"Tokyo", "Asia/Tokyo", time.Date(2027, 6, 10, 10, 0, 0, 0, time.UTC), "2027-06-10T01:00:00Z", "20270610T100000", []string{
			"STANDARD 19510909T010000 +1000 +0900 JST"}},
		{"UTC", "UTC", time.Date(2027, 6, 10, 10, 0, 0, 0, time.UTC), "2027-06-10T10:00:00Z", "20270610T100000", []string{
			"STANDARD 19700101T000000 +0000 +0000 UTC"}},
		{"New York, over new year", "America/New_York", time.Date(2027, 12, 31, 20, 0, 0, 0, time.UTC), "2028-01-01T01:00:00Z", "20271231T200000", []string{
			"STANDARD 20261101T020000 -0400 -0500 EST", "DAYLIGHT 20270314T020000 -0500 -0400 EDT", "STANDARD 20271107T020000 -0400 -0500 EST",
			"DAYLIGHT 20280312T020000 -0500 -0400 EDT", "STANDARD 20281105T020000 -0400 -0500 EST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := mustZone(t, tc.tz)
			s := tc.start
			e := Event{ID: "abcdefghij", Title: "x", TZ: tc.tz, Start: time.Date(s.Year(), s.Month(), s.Day(), s.Hour(), s.Minute(), 0, 0, loc)}
			e.End = e.Start.Add(26 * time.Hour)
			data := validICS(t, e)
			cal, ev := parseICS(t, data)
			dtstart := ev.Props.Get(ical.PropDateTimeStart)
			if dtstart.Value != tc.wantStart || dtstart.Params.Get("TZID") != tc.tz {
				t.Errorf("DTSTART;TZID=%s:%s, want TZID=%s:%s", dtstart.Params.Get("TZID"), dtstart.Value, tc.tz, tc.wantStart)
			}
			want, _ := time.Parse(time.RFC3339, tc.wantUTC)
			if got := resolveICS(t, cal, dtstart); !got.Equal(want) {
				t.Errorf("DTSTART through the VTIMEZONE = %s, want %s", got, want)
			}
			if got, err := ev.DateTimeStart(nil); err != nil || !got.Equal(want) { // the parser's own reading of the TZID
				t.Errorf("DTSTART as go-ical reads it = %s, %v; want %s", got, err, want)
			}
			if got := resolveICS(t, cal, ev.Props.Get(ical.PropDateTimeEnd)); !got.Equal(want.Add(26 * time.Hour)) {
				t.Errorf("DTEND through the VTIMEZONE = %s, want %s", got, want.Add(26*time.Hour))
			}
			if tc.wantObs == nil {
				return
			}
			var got []string
			for _, o := range observances(t, cal, tc.tz) {
				got = append(got, fmt.Sprintf("%s %s %s %s %s", o.kind, o.wall, icsOffset(o.from), icsOffset(o.to), o.name))
			}
			if diff := cmp.Diff(tc.wantObs, got); diff != "" {
				t.Errorf("observances (-want +got):\n%s", diff)
			}
		})
	}
}

// An instant in the hour that occurs twice cannot be written as a TZID wall time: it is written in UTC.
func TestEventICSRepeatedHour(t *testing.T) {
	second := time.Date(2027, 10, 31, 1, 30, 0, 0, time.UTC) // 02:30 CET, after 02:30 CEST
	e := Event{ID: "abcdefghij", Title: "x", TZ: "Europe/Berlin", Start: second, End: second.Add(time.Hour)}
	data := validICS(t, e)
	cal, ev := parseICS(t, data)
	if p := ev.Props.Get(ical.PropDateTimeStart); p.Value != "20271031T013000Z" || !resolveICS(t, cal, p).Equal(second) {
		t.Errorf("DTSTART = %+v, want 20271031T013000Z", p)
	}
	if p := ev.Props.Get(ical.PropDateTimeEnd); p.Value != "20271031T033000" || !resolveICS(t, cal, p).Equal(second.Add(time.Hour)) {
		t.Errorf("DTEND = %+v, want TZID wall time 20271031T033000", p)
	}
}

func TestEventICSEscapingAndFolding(t *testing.T) {
	title := "CSR, due diligence; scope 3 \\ supply chain\nday 2"
	desc := string([]rune(strings.Repeat("Über Lieferketten – ça va 😀, 供应链; ", 10))[:200]) // 1- to 4-byte characters
	e := mustEvent(t, "Europe/Berlin", 2027, 3, 9, 9)
	e.ID, e.Title, e.Description, e.Place = "abcdefghij", title, desc, "Via Roma 1, 25100 Brescia"
	data := validICS(t, e)
	if !bytes.HasSuffix(data, []byte("\r\n")) || bytes.Count(data, []byte("\n")) != bytes.Count(data, []byte("\r\n")) {
		t.Error("lines do not all end in CRLF")
	}
	if !bytes.Contains(data, []byte(`SUMMARY:CSR\, due diligence\; scope 3 \\ supply chain\nday 2`)) {
		t.Errorf("SUMMARY not escaped:\n%s", data)
	}
	folded := 0
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\r\n"), "\r\n") {
		if len(line) > 75 {
			t.Errorf("line %d has %d octets: %q", i+1, len(line), line)
		}
		if !utf8.ValidString(line) {
			t.Errorf("line %d is not valid UTF-8 on its own: %q", i+1, line)
		}
		if strings.HasPrefix(line, " ") {
			folded++
		}
	}
	if utf8.RuneCountInString(desc) != 200 || folded < 3 {
		t.Errorf("%d continuation lines; a %d-byte description needs more:\n%s", folded, len(desc), data)
	}
	for shift := range 4 { // every position of a 4-byte character against the 75-octet limit
		var w icsWriter
		in := "DESCRIPTION:" + strings.Repeat("x", shift) + strings.Repeat("😀", 60)
		w.line(in)
		lines := strings.Split(strings.TrimSuffix(w.buf.String(), "\r\n"), "\r\n")
		for i, l := range lines {
			if len(l) > 75 || !utf8.ValidString(l) || (i > 0 && l[0] != ' ') {
				t.Errorf("shift %d: line %d %q (%d octets)", shift, i+1, l, len(l))
			}
		}
		if got := strings.ReplaceAll(w.buf.String(), "\r\n ", ""); got != in+"\r\n" {
			t.Errorf("shift %d: unfolded %q, want %q", shift, got, in)
		}
	}
	_, ev := parseICS(t, data)
	if got := icsProp(t, ev, "SUMMARY"); got != title {
		t.Errorf("SUMMARY = %q, want %q", got, title)
	}
	if got := icsProp(t, ev, "DESCRIPTION"); got != desc {
		t.Errorf("DESCRIPTION = %q, want %q", got, desc)
	}
	if got := icsProp(t, ev, "LOCATION"); got != e.Place {
		t.Errorf("LOCATION = %q, want %q", got, e.Place)
	}
}

func TestEventCalendarLinks(t *testing.T) {
	e := mustEvent(t, "Europe/Berlin", 2027, 7, 14, 10)
	e.Title, e.Description, e.Place, e.URL = "CSR & you: 100% + more", "Line 1\nLine 2", "Messe, Halle 5", "https://platform.example/live?x=1&y=2"
	links := e.CalendarLinks("https://platform.example/events/abc.ics")
	if links.ICS != "https://platform.example/events/abc.ics" {
		t.Errorf("ICS = %q", links.ICS)
	}
	g, err := url.Parse(links.Google)
	if err != nil {
		t.Fatal(err)
	}
	if g.Scheme+"://"+g.Host+g.Path != "https://calendar.google.com/calendar/render" {
		t.Errorf("Google link %s", links.Google)
	}
	q := g.Query()
	for k, want := range map[string]string{"action": "TEMPLATE", "text": e.Title, "dates": "20270714T080000Z/20270714T160000Z",
		"details": "Line 1\nLine 2\n\nhttps://platform.example/live?x=1&y=2", "location": "Messe, Halle 5", "ctz": "Europe/Berlin"} {
		if q.Get(k) != want {
			t.Errorf("Google %s = %q, want %q", k, q.Get(k), want)
		}
	}
	o, err := url.Parse(links.Outlook)
	if err != nil {
		t.Fatal(err)
	}
	if o.Host != "outlook.live.com" || o.Path != "/calendar/0/deeplink/compose" || strings.Contains(o.RawQuery, "+") {
		t.Errorf("Outlook link %s", links.Outlook)
	}
	q = o.Query()
	for k, want := range map[string]string{"path": "/calendar/action/compose", "rru": "addevent", "subject": e.Title, "location": "Messe, Halle 5",
		"body": "Line 1\nLine 2\n\nhttps://platform.example/live?x=1&y=2"} {
		if q.Get(k) != want {
			t.Errorf("Outlook %s = %q, want %q", k, q.Get(k), want)
		}
	}
	for k, want := range map[string]time.Time{"startdt": e.Start, "enddt": e.End} {
		if got, err := time.Parse(time.RFC3339, q.Get(k)); err != nil || !got.Equal(want) {
			t.Errorf("Outlook %s = %q, want %s", k, q.Get(k), want)
		}
	}
}

func TestEventWhen(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	day := Event{TZ: "Europe/Berlin", Start: time.Date(2027, 3, 9, 9, 0, 0, 0, time.UTC), End: time.Date(2027, 3, 9, 16, 0, 0, 0, time.UTC)}
	multi := Event{TZ: "Europe/Berlin", Start: time.Date(2027, 9, 30, 9, 0, 0, 0, berlin), End: time.Date(2027, 10, 1, 17, 30, 0, 0, berlin)}
	evening := Event{TZ: "Europe/Lisbon", Start: time.Date(2027, 6, 1, 19, 0, 0, 0, mustZone(t, "Europe/Lisbon")), End: time.Date(2027, 6, 2, 0, 0, 0, 0, mustZone(t, "Europe/Lisbon"))}
	for _, tc := range []struct {
		e          Event
		lang, want string
	}{
		{day, "en", "Tue 9 March 2027, 10:00–17:00 (Europe/Berlin)"},
		{day, "de", "Di., 9. März 2027, 10:00–17:00 Uhr (Europe/Berlin)"},
		{day, "it", "mar 9 marzo 2027, 10:00–17:00 (Europe/Berlin)"},
		{day, "fr", "mar. 9 mars 2027, 10:00–17:00 (Europe/Berlin)"},
		{day, "es", "mar, 9 de marzo de 2027, 10:00–17:00 (Europe/Berlin)"},
		{day, "", "Tue 9 March 2027, 10:00–17:00 (Europe/Berlin)"},
		{day, "de-AT", "Di., 9. März 2027, 10:00–17:00 Uhr (Europe/Berlin)"},
		{multi, "en", "Thu 30 September 2027, 09:00 – Fri 1 October 2027, 17:30 (Europe/Berlin)"},
		{multi, "de", "Do., 30. September 2027, 09:00 Uhr – Fr., 1. Oktober 2027, 17:30 Uhr (Europe/Berlin)"},
		{multi, "fr", "jeu. 30 septembre 2027, 09:00 – ven. 1er octobre 2027, 17:30 (Europe/Berlin)"},
		{evening, "es", "mar, 1 de junio de 2027, 19:00–24:00 (Europe/Lisbon)"},
	} {
		if got := tc.e.When(tc.lang); got != tc.want {
			t.Errorf("When(%q) = %q, want %q", tc.lang, got, tc.want)
		}
	}
}
