package campaigns

import (
	"bytes"
	"context"
	"crypto/rand"
	"csrdesk/internal/rdb"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Event is something subscribers are invited to: a fair, a workshop, a webinar. Its ID is also the stable
// part of the calendar UID, so that an update replaces the entry in people's calendars instead of adding one.
type Event struct {
	ID          string    `json:"id"`
	Title       string    `json:"title"`
	Description string    `json:"description,omitempty"`
	Place       string    `json:"place,omitempty"`     // a physical address
	URL         string    `json:"url,omitempty"`       // an online link (http or https)
	Organizer   string    `json:"organizer,omitempty"` // an address, "Name <mail@example.com>" accepted
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	TZ          string    `json:"tz"`       // IANA name, e.g. Europe/Berlin: the wall time people see and the .ics's TZID
	Sequence    int       `json:"sequence"` // the iCalendar SEQUENCE: 0, then one more on every update
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated,omitzero"`
}

// eventsKey is a hash of event id -> JSON. Events are few (a handful a year), so one hash keeps listing cheap.
const eventsKey = rdb.CalendarEvents

// ParseLocal reads a wall time such as "2027-03-09 09:00" (or 2027-03-09T09:00) in the IANA zone tz. A time the
// zone skips (the hour clocks go forward) is an error rather than silently moved.
func ParseLocal(value, tz string) (time.Time, error) {
	loc, err := eventZone(tz)
	if err != nil {
		return time.Time{}, err
	}
	value = strings.TrimSpace(value)
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		t, err := time.ParseInLocation(layout, value, loc)
		if err != nil {
			continue
		}
		if t.Format(layout) != value {
			return time.Time{}, fmt.Errorf("%s does not exist in %s (the clocks skip it)", value, tz)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want a date and time like 2027-03-09 09:00", value)
}

func eventZone(tz string) (*time.Location, error) {
	if tz == "" || tz == "Local" {
		return nil, fmt.Errorf("time zone %q: want an IANA name like Europe/Berlin", tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: want an IANA name like Europe/Berlin", tz)
	}
	return loc, nil
}

// validate checks an event and puts its times in its zone, to the second.
func (e *Event) validate() error {
	e.Title = strings.TrimSpace(e.Title)
	e.TZ = strings.TrimSpace(e.TZ)
	e.URL = strings.TrimSpace(e.URL)
	e.Organizer = strings.TrimSpace(e.Organizer)
	e.Place = strings.TrimSpace(e.Place)
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("event: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if e.Title == "" {
		return invalid("title is required")
	}
	for name, v := range map[string]string{"title": e.Title, "description": e.Description, "place": e.Place, "organizer": e.Organizer} {
		if !utf8.ValidString(v) {
			return invalid("%s is not valid UTF-8", name)
		}
	}
	loc, err := eventZone(e.TZ)
	if err != nil {
		return invalid("tz: %v", err)
	}
	if e.Start.IsZero() || e.End.IsZero() {
		return invalid("start and end are required")
	}
	e.Start, e.End = e.Start.In(loc).Truncate(time.Second), e.End.In(loc).Truncate(time.Second)
	if !e.End.After(e.Start) {
		return invalid("end (%s) must be after start (%s)", e.End.Format("2006-01-02 15:04"), e.Start.Format("2006-01-02 15:04"))
	}
	if e.URL != "" {
		u, err := url.Parse(e.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(e.URL, " \t\r\n") {
			return invalid("url %q: want an http:// or https:// link", e.URL)
		}
	}
	if e.Organizer != "" {
		if _, err := mail.ParseAddress(e.Organizer); err != nil {
			return invalid("organizer %q: want an address, e.g. Anna Rossi <anna@example.com>", e.Organizer)
		}
	}
	return nil
}

func newEventID() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))[:10]
}

// CreateEvent checks and stores a new event, with a new id and sequence 0.
func (s *Store) CreateEvent(ctx context.Context, e Event) (*Event, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	e.Sequence, e.Created, e.Updated = 0, s.now().UTC().Truncate(time.Second), time.Time{}
	for range 5 { // 50 random bits: a collision is all but impossible, but HSETNX makes one harmless
		e.ID = newEventID()
		data, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("create event: %w", err)
		}
		ok, err := s.rdb.HSetNX(ctx, eventsKey, e.ID, data).Result()
		if err != nil {
			return nil, fmt.Errorf("create event: %w", err)
		}
		if ok {
			return &e, nil
		}
	}
	return nil, fmt.Errorf("create event: no free id")
}

// Event returns an event.
func (s *Store) Event(ctx context.Context, id string) (*Event, error) {
	data, err := s.rdb.HGet(ctx, eventsKey, id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", id, err)
	}
	return decodeEvent(id, data)
}

func decodeEvent(id, data string) (*Event, error) {
	var e Event
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		return nil, fmt.Errorf("event %s: %w", id, err)
	}
	if loc, err := eventZone(e.TZ); err == nil {
		e.Start, e.End = e.Start.In(loc), e.End.In(loc)
	}
	return &e, nil
}

// Events returns every event, the earliest first.
func (s *Store) Events(ctx context.Context) ([]Event, error) {
	all, err := s.rdb.HGetAll(ctx, eventsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	out := make([]Event, 0, len(all))
	for id, data := range all {
		e, err := decodeEvent(id, data)
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// replaceEvent stores the new JSON only if the stored one is still what the update started from.
var replaceEvent = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return -1 end
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`)

// UpdateEvent applies change to an event, checks the result and stores it with the next sequence number. The
// id, sequence and creation time are not change's to set. Two concurrent updates both count: each is applied
// to the other's result (compare-and-set, retried).
func (s *Store) UpdateEvent(ctx context.Context, id string, change func(*Event)) (*Event, error) {
	for range 100 {
		old, err := s.rdb.HGet(ctx, eventsKey, id).Result()
		if errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("event %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("update event %s: %w", id, err)
		}
		e, err := decodeEvent(id, old)
		if err != nil {
			return nil, err
		}
		seq, created := e.Sequence, e.Created
		change(e)
		if err := e.validate(); err != nil {
			return nil, err
		}
		e.ID, e.Sequence, e.Created, e.Updated = id, seq+1, created, s.now().UTC().Truncate(time.Second)
		data, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("update event %s: %w", id, err)
		}
		res, err := replaceEvent.Run(ctx, s.rdb, []string{eventsKey}, id, old, data).Int()
		if err != nil {
			return nil, fmt.Errorf("update event %s: %w", id, err)
		}
		switch res {
		case 1:
			return e, nil
		case -1:
			return nil, fmt.Errorf("event %s: %w", id, ErrNotFound)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("update event %s: %w", id, err)
		}
	}
	return nil, fmt.Errorf("update event %s: changed by others too often, try again", id)
}

// FollowUp is what an event's update did to the campaigns that carry it.
type FollowUp struct {
	Moved   []*Campaign // reminders not sent yet: their send time follows the event's start
	Invited []int64     // campaigns that have sent the event to people
	Update  *Campaign   // with notify: the update to everybody they sent it to, started; nil when nobody was
	People  int64       // with notify: how many people that is
}

// FollowEvent brings the campaigns that carry an updated event in line with it. A reminder not sent yet (a
// campaign with SendBefore) moves with the event's start. With notify, everybody a campaign has sent the event
// to gets its update: a list of them, named event-<id>-<sequence>, and a campaign to it with the first
// invitation's content, each subject marked as an update in its language, and the event's .ics: the same UID,
// the new sequence. It is started at once; subscribers who have left since are skipped as in any campaign.
func (s *Store) FollowEvent(ctx context.Context, e *Event, notify bool) (*FollowUp, error) {
	f := &FollowUp{}
	var first *Campaign
	err := s.eachCampaign(ctx, func(c *Campaign) error {
		switch {
		case c.Event != e.ID:
		case c.State == Draft || c.State == Scheduled:
			if c.SendBefore <= 0 {
				return nil
			}
			c.SendAt = e.Start.Add(-c.SendBefore)
			data, err := json.Marshal(c)
			if err != nil {
				return err
			}
			// Only the description: the state is the workers' to change meanwhile.
			if err := s.rdb.HSet(ctx, campaignKeys(c.ID).meta, "json", data).Err(); err != nil {
				return err
			}
			f.Moved = append(f.Moved, c)
		default:
			f.Invited = append(f.Invited, c.ID)
			if first == nil {
				first = c
			}
		}
		return nil
	})
	if err != nil || !notify || first == nil {
		return f, err
	}
	list := fmt.Sprintf("event-%s-%d", e.ID, e.Sequence)
	if err := s.CreateList(ctx, List{Name: list, Title: "Update " + strconv.Itoa(e.Sequence) + ": " + e.Title}); err != nil {
		return nil, fmt.Errorf("event update: %w", err)
	}
	at := float64(s.now().UnixMilli())
	for _, id := range f.Invited {
		iter := s.rdb.HScan(ctx, campaignKeys(id).delivery, 0, "", 1000).Iterator()
		pipe := s.rdb.Pipeline()
		for iter.Next(ctx) {
			email := iter.Val()
			if !iter.Next(ctx) {
				break
			}
			if iter.Val() == "sent" {
				pipe.ZAddNX(ctx, membersKey(list), redis.Z{Score: at, Member: email})
			}
			if pipe.Len() == 1000 {
				if _, err := pipe.Exec(ctx); err != nil {
					return nil, fmt.Errorf("event update: %w", err)
				}
			}
		}
		if err := iter.Err(); err != nil {
			return nil, fmt.Errorf("event update: campaign %d: %w", id, err)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("event update: %w", err)
		}
	}
	if f.People, err = s.rdb.ZCard(ctx, membersKey(list)).Result(); err != nil || f.People == 0 {
		return f, err
	}
	texts, err := pageTexts()
	if err != nil {
		return nil, err
	}
	content := Content{Subject: map[string]string{}, Body: first.Content.Body}
	for lang, subject := range first.Content.Subject {
		in := lang
		if in == "" {
			in = "en" // the default subject is taken to be English
		}
		content.Subject[lang] = texts.Text(in, "event_updated", nil) + ": " + subject
	}
	c, err := s.CreateCampaign(ctx, Campaign{Name: first.Name + " (update " + strconv.Itoa(e.Sequence) + ")", Lists: []string{list},
		From: first.From, Content: content, Event: e.ID}, func(Content) error { return nil }) // the invitation's content compiled
	if err != nil {
		return nil, fmt.Errorf("event update: %w", err)
	}
	if f.Update, err = s.Transition(ctx, c.ID, "start"); err != nil {
		return nil, fmt.Errorf("event update: %w", err)
	}
	return f, nil
}

// The .ics is written by hand rather than with github.com/arran4/golang-ical: v0.3.4 backslash-escapes
// parameter values (an organizer CN "Rossi, Anna" becomes CN=Rossi\, Anna, which RFC 5545 does not allow:
// such values must be quoted), passes carriage returns through in TEXT, and builds no VTIMEZONE from Go's zone
// database, which we need anyway. What remains is escaping and folding, a few lines each.

// ICS returns the event as an iCalendar (RFC 5545) file with one VEVENT and the VTIMEZONE its times refer to.
// domain makes the UID globally unique (<id>@<domain>); keep it the same across updates. now is the DTSTAMP.
func (e *Event) ICS(domain string, now time.Time) ([]byte, error) {
	domain = strings.TrimSpace(domain)
	if domain == "" || strings.ContainsAny(domain, " \t\r\n@") {
		return nil, fmt.Errorf("event %s: ics: %w: domain %q", e.ID, ErrInvalid, domain)
	}
	loc, err := eventZone(e.TZ)
	if err != nil {
		return nil, fmt.Errorf("event %s: ics: %w", e.ID, err)
	}
	var w icsWriter
	w.line("BEGIN:VCALENDAR")
	w.line("VERSION:2.0")
	w.line("PRODID:-//csrdesk//EN")
	w.line("CALSCALE:GREGORIAN")
	w.line("METHOD:PUBLISH")
	w.timezone(loc, e.TZ, e.Start, e.End)
	w.line("BEGIN:VEVENT")
	w.line("UID:" + icsText(e.ID+"@"+domain))
	w.line(fmt.Sprintf("SEQUENCE:%d", e.Sequence))
	w.line("DTSTAMP:" + icsUTC(now))
	if !e.Created.IsZero() {
		w.line("CREATED:" + icsUTC(e.Created))
	}
	modified := e.Updated
	if modified.IsZero() {
		modified = e.Created
	}
	if !modified.IsZero() {
		w.line("LAST-MODIFIED:" + icsUTC(modified))
	}
	w.line("DTSTART" + icsLocal(e.Start, loc, e.TZ))
	w.line("DTEND" + icsLocal(e.End, loc, e.TZ))
	w.line("SUMMARY:" + icsText(e.Title))
	if e.Description != "" {
		w.line("DESCRIPTION:" + icsText(e.Description))
	}
	if where := e.location(); where != "" {
		w.line("LOCATION:" + icsText(where))
	}
	if e.URL != "" {
		w.line("URL:" + e.URL) // a URI value: not TEXT-escaped (validate keeps out spaces and line breaks)
	}
	if e.Organizer != "" {
		a, err := mail.ParseAddress(e.Organizer)
		if err != nil {
			return nil, fmt.Errorf("event %s: ics: organizer: %w", e.ID, err)
		}
		org := "ORGANIZER"
		if a.Name != "" {
			org += ";CN=" + icsParam(a.Name)
		}
		w.line(org + ":mailto:" + a.Address)
	}
	w.line("STATUS:CONFIRMED")
	w.line("END:VEVENT")
	w.line("END:VCALENDAR")
	return w.buf.Bytes(), nil
}

// location is where people go: the place, or the link when the event is only online.
func (e *Event) location() string {
	if e.Place != "" {
		return e.Place
	}
	return e.URL
}

type icsWriter struct{ buf bytes.Buffer }

// line writes a content line folded at 75 octets (RFC 5545 3.1), never inside a UTF-8 sequence; each
// continuation starts with a space, which counts towards its 75.
func (w *icsWriter) line(s string) {
	limit := 75
	for len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		w.buf.WriteString(s[:cut])
		w.buf.WriteString("\r\n ")
		s = s[cut:]
		limit = 74
	}
	w.buf.WriteString(s)
	w.buf.WriteString("\r\n")
}

// timezone writes a VTIMEZONE for tz covering [start, end]: the observance in force when start's year begins,
// then every offset change until end's year is over. Go's zone database knows each change exactly
// (Time.ZoneBounds), so there is no need to scan day by day for them.
func (w *icsWriter) timezone(loc *time.Location, tz string, start, end time.Time) {
	from := time.Date(start.In(loc).Year(), 1, 1, 0, 0, 0, 0, loc)
	until := time.Date(end.In(loc).Year()+1, 1, 1, 0, 0, 0, 0, loc)
	w.line("BEGIN:VTIMEZONE")
	w.line("TZID:" + icsText(tz))
	onset, _ := from.ZoneBounds()
	if onset.IsZero() { // the zone has always had this offset (UTC) or has no recorded start: a fixed onset
		_, off := from.Zone()
		w.observance(from, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), off)
	} else {
		w.transition(onset)
	}
	for t := from; ; {
		_, next := t.ZoneBounds()
		if next.IsZero() || !next.Before(until) {
			break
		}
		_, before := next.Add(-time.Second).Zone()
		if _, after := next.Zone(); before != after { // a change of name or DST flag alone is not an offset change
			w.transition(next)
		}
		t = next
	}
	w.line("END:VTIMEZONE")
}

// transition writes the observance that begins at instant at: its DTSTART is the wall time just before it,
// in the offset it ends (TZOFFSETFROM), as RFC 5545 3.6.5 asks.
func (w *icsWriter) transition(at time.Time) {
	_, before := at.Add(-time.Second).Zone()
	w.observance(at, at.UTC().Add(time.Duration(before)*time.Second), before)
}

func (w *icsWriter) observance(at, wall time.Time, offsetFrom int) {
	name, offsetTo := at.Zone()
	kind := "STANDARD"
	if at.IsDST() {
		kind = "DAYLIGHT"
	}
	w.line("BEGIN:" + kind)
	w.line("DTSTART:" + wall.Format("20060102T150405"))
	w.line("TZOFFSETFROM:" + icsOffset(offsetFrom))
	w.line("TZOFFSETTO:" + icsOffset(offsetTo))
	w.line("TZNAME:" + icsText(name))
	w.line("END:" + kind)
}

func icsOffset(sec int) string {
	sign := "+"
	if sec < 0 {
		sign, sec = "-", -sec
	}
	s := fmt.Sprintf("%s%02d%02d", sign, sec/3600, sec/60%60)
	if sec%60 != 0 {
		s += fmt.Sprintf("%02d", sec%60)
	}
	return s
}

func icsUTC(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// icsLocal returns ";TZID=<tz>:<wall time>", or ":<UTC>" for the second pass through an hour the clocks go
// back over: RFC 5545 3.3.5 reads a wall time that occurs twice as the first one.
func icsLocal(t time.Time, loc *time.Location, tz string) string {
	const layout = "20060102T150405"
	l := t.In(loc)
	if start, _ := l.ZoneBounds(); !start.IsZero() {
		_, before := start.Add(-time.Second).Zone()
		if _, now := l.Zone(); before > now {
			if earlier := l.Add(-time.Duration(before-now) * time.Second); earlier.Before(start) && earlier.Format(layout) == l.Format(layout) {
				return ":" + icsUTC(t)
			}
		}
	}
	return ";TZID=" + icsParam(tz) + ":" + l.Format(layout)
}

// icsText escapes a TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and line breaks; other control
// characters, which TEXT does not allow, are dropped.
func icsText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\' || r == ';' || r == ',':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n' || r == '\r':
			b.WriteString(`\n`)
		case r == '\t' || (r >= 0x20 && r != 0x7f):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// icsParam returns a parameter value, quoted when it holds ":", ";" or ","; parameter values have no escapes,
// so a double quote (not allowed even quoted) becomes a single one and control characters are dropped.
func icsParam(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, s)
	if strings.ContainsAny(s, ":;,") {
		return `"` + s + `"`
	}
	return s
}

// CalendarLinks are the ways to put an event in a calendar, for an invitation mail.
type CalendarLinks struct {
	Google  string `json:"google"`
	Outlook string `json:"outlook"` // Outlook on the web (outlook.live.com)
	ICS     string `json:"ics"`     // the .ics file, for Apple Calendar, Thunderbird and desktop Outlook
}

// CalendarLinks returns "add to calendar" links; icsURL is where the event's .ics is served.
func (e *Event) CalendarLinks(icsURL string) CalendarLinks {
	details := e.Description
	if e.URL != "" && e.Place != "" { // otherwise the link is already the location
		details = strings.TrimSpace(details + "\n\n" + e.URL)
	}
	google := "https://calendar.google.com/calendar/render?action=TEMPLATE" +
		"&text=" + linkEscape(e.Title) +
		"&dates=" + icsUTC(e.Start) + "/" + icsUTC(e.End) +
		"&details=" + linkEscape(details) +
		"&location=" + linkEscape(e.location()) +
		"&ctz=" + linkEscape(e.TZ)
	outlook := "https://outlook.live.com/calendar/0/deeplink/compose?path=/calendar/action/compose&rru=addevent" +
		"&subject=" + linkEscape(e.Title) +
		"&startdt=" + linkEscape(e.Start.UTC().Format(time.RFC3339)) +
		"&enddt=" + linkEscape(e.End.UTC().Format(time.RFC3339)) +
		"&body=" + linkEscape(details) +
		"&location=" + linkEscape(e.location())
	return CalendarLinks{Google: google, Outlook: outlook, ICS: icsURL}
}

// linkEscape escapes spaces as %20: Outlook on the web shows a "+" in a subject as it is.
func linkEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// dateWords are the weekday and month names a mail language writes dates with.
type dateWords struct {
	days   [7]string // Sunday first, as time.Weekday
	months [12]string
}

var eventDates = map[string]dateWords{
	"en": {[7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"},
		[12]string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}},
	"de": {[7]string{"So.", "Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa."},
		[12]string{"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"}},
	"it": {[7]string{"dom", "lun", "mar", "mer", "gio", "ven", "sab"},
		[12]string{"gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre", "ottobre", "novembre", "dicembre"}},
	"fr": {[7]string{"dim.", "lun.", "mar.", "mer.", "jeu.", "ven.", "sam."},
		[12]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"}},
	"es": {[7]string{"dom", "lun", "mar", "mié", "jue", "vie", "sáb"},
		[12]string{"enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"}},
}

// When is the event's date and time for a mail in lang (en, de, it, fr, es; anything else is English), in the
// event's own zone: "Tue 9 March 2027, 09:00–17:00 (Europe/Berlin)". An event over several days shows both
// dates; one that ends at midnight ends at 24:00 rather than on the next day.
func (e *Event) When(lang string) string {
	lang = strings.ToLower(lang)
	if i := strings.IndexAny(lang, "-_"); i >= 0 {
		lang = lang[:i]
	}
	w, ok := eventDates[lang]
	if !ok {
		lang, w = "en", eventDates["en"]
	}
	start, end := e.Start, e.End
	if loc, err := eventZone(e.TZ); err == nil {
		start, end = start.In(loc), end.In(loc)
	}
	date := func(t time.Time) string {
		d, m, y := t.Day(), w.months[t.Month()-1], t.Year()
		day := w.days[t.Weekday()]
		switch lang {
		case "de":
			return fmt.Sprintf("%s, %d. %s %d", day, d, m, y)
		case "fr":
			n := fmt.Sprint(d)
			if d == 1 {
				n = "1er"
			}
			return fmt.Sprintf("%s %s %s %d", day, n, m, y)
		case "es":
			return fmt.Sprintf("%s, %d de %s de %d", day, d, m, y)
		}
		return fmt.Sprintf("%s %d %s %d", day, d, m, y)
	}
	clock := func(t time.Time) string { return t.Format("15:04") }
	endClock := clock(end)
	if endClock == "00:00" && end.Sub(start) <= 24*time.Hour {
		endClock, end = "24:00", end.Add(-time.Minute)
	}
	uhr := ""
	if lang == "de" {
		uhr = " Uhr"
	}
	zone := " (" + e.TZ + ")"
	if start.Format("20060102") == end.Format("20060102") {
		return date(start) + ", " + clock(start) + "–" + endClock + uhr + zone
	}
	return date(start) + ", " + clock(start) + uhr + " – " + date(end) + ", " + endClock + uhr + zone
}

// EventDomain is the domain of event UIDs: the public URL's host, or csrdesk.local for a local address. It must
// stay the same for an event's life, or calendars take an update for a new event.
func EventDomain(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil {
		return "csrdesk.local"
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || host == "localhost" || net.ParseIP(host) != nil {
		return "csrdesk.local"
	}
	return host
}
