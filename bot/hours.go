package bot

import (
	"fmt"
	"strings"
	"time"
)

// Hours are the staff's office hours, such as "Mon-Fri 09:00-17:00 Europe/Brussels". Outside them, a person who
// is handed over is told when to expect an answer.
type Hours struct {
	Spec       string
	days       [7]bool // by time.Weekday
	start, end int     // minutes after midnight
	loc        *time.Location
	always     bool
}

// DefaultHours are weekdays 09:00-17:00, Brussels time.
func DefaultHours() Hours {
	h, _ := ParseHours("Mon-Fri 09:00-17:00 Europe/Brussels")
	return h
}

var weekdays = map[string]time.Weekday{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// ParseHours reads "DAYS HH:MM-HH:MM ZONE", where DAYS is a day (Mon), a range (Mon-Fri) or a comma list of
// either (Mon-Thu,Sat); ZONE is an IANA time zone. "always" means staff are always there.
func ParseHours(spec string) (Hours, error) {
	h := Hours{Spec: strings.TrimSpace(spec)}
	if strings.EqualFold(h.Spec, "always") {
		h.always = true
		return h, nil
	}
	f := strings.Fields(h.Spec)
	if len(f) != 3 {
		return h, fmt.Errorf("office hours %q: want DAYS HH:MM-HH:MM ZONE, e.g. Mon-Fri 09:00-17:00 Europe/Brussels", spec)
	}
	for _, part := range strings.Split(strings.ToLower(f[0]), ",") {
		from, to, isRange := strings.Cut(part, "-")
		if !isRange {
			to = from
		}
		a, ok1 := weekdays[from]
		b, ok2 := weekdays[to]
		if !ok1 || !ok2 {
			return h, fmt.Errorf("office hours %q: %q is not a day or range of days (Mon, Tue, ... Sun)", spec, part)
		}
		for d := a; ; d = (d + 1) % 7 {
			h.days[d] = true
			if d == b {
				break
			}
		}
	}
	from, to, ok := strings.Cut(f[1], "-")
	var err1, err2 error
	h.start, err1 = clock(from)
	h.end, err2 = clock(to)
	if !ok || err1 != nil || err2 != nil || h.end <= h.start {
		return h, fmt.Errorf("office hours %q: %q is not a time range like 09:00-17:00", spec, f[1])
	}
	loc, err := time.LoadLocation(f[2])
	if err != nil {
		return h, fmt.Errorf("office hours %q: unknown time zone %q", spec, f[2])
	}
	h.loc = loc
	return h, nil
}

func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, err
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Open reports whether staff work at t.
func (h Hours) Open(t time.Time) bool {
	if h.always || h.loc == nil {
		return true
	}
	t = t.In(h.loc)
	m := t.Hour()*60 + t.Minute()
	return h.days[t.Weekday()] && m >= h.start && m < h.end
}

// Next returns when staff next start work after t (t itself if they are working).
func (h Hours) Next(t time.Time) time.Time {
	if h.Open(t) {
		return t
	}
	t = t.In(h.loc)
	for i := 0; i < 8; i++ {
		day := time.Date(t.Year(), t.Month(), t.Day()+i, 0, 0, 0, 0, h.loc)
		start := day.Add(time.Duration(h.start) * time.Minute)
		if h.days[day.Weekday()] && start.After(t) {
			return start
		}
	}
	return t
}
