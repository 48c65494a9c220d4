package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	netmail "net/mail"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"csrdesk/campaigns"
)

const eventsUsage = "events: want no arguments (to list them), create, update ID or show ID"

// eventFlags are the fields create and update share; update changes only those given.
type eventFlags struct {
	fs                                                         *flag.FlagSet
	title, description, place, link, organizer, start, end, tz *string
}

func newEventFlags(name string) *eventFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &eventFlags{
		fs:          fs,
		title:       fs.String("title", "", "the event's title"),
		description: fs.String("description", "", "what it is about"),
		place:       fs.String("place", "", "the address, for an event in person"),
		link:        fs.String("url", "", "the http(s) link, for an event online"),
		organizer:   fs.String("organizer", "", `the organizer's address: "Anna Rossi <anna@example.com>"`),
		start:       fs.String("start", "", `when it starts, in --tz: "2027-03-09 09:00" (update: without --end it keeps its length)`),
		end:         fs.String("end", "", `when it ends, in --tz: "2027-03-09 17:00"`),
		tz:          fs.String("tz", "", "the IANA time zone of --start and --end: Europe/Berlin (update: without --start, the wall times stay)"),
	}
}

// given returns the flags set on the command line, even to "".
func (f *eventFlags) given() map[string]bool {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// check looks at what only the command line can get wrong, naming the flag; the store checks the rest.
func (f *eventFlags) check(cmd string, set map[string]bool) error {
	if set["title"] && strings.TrimSpace(*f.title) == "" {
		return usageError(cmd + ": --title must not be empty")
	}
	if set["url"] && *f.link != "" {
		if u, err := url.Parse(*f.link); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError(fmt.Sprintf("%s: --url %q: want an http:// or https:// link", cmd, *f.link))
		}
	}
	if set["organizer"] && *f.organizer != "" {
		if _, err := netmail.ParseAddress(*f.organizer); err != nil {
			return usageError(fmt.Sprintf(`%s: --organizer %q: want an address, e.g. "Anna Rossi <anna@example.com>"`, cmd, *f.organizer))
		}
	}
	if set["tz"] {
		if _, err := eventZone(*f.tz); err != nil {
			return usageError(fmt.Sprintf("%s: --tz %q: want an IANA time zone like Europe/Berlin", cmd, *f.tz))
		}
	}
	return nil
}

func eventZone(tz string) (*time.Location, error) {
	if tz == "" || tz == "Local" {
		return nil, fmt.Errorf("no zone")
	}
	return time.LoadLocation(tz)
}

// eventTime reads --start or --end in tz.
func eventTime(cmd, name, value, tz string) (time.Time, error) {
	t, err := campaigns.ParseLocal(value, tz)
	if err != nil {
		return time.Time{}, usageError(fmt.Sprintf("%s: --%s: %v", cmd, name, err))
	}
	return t, nil
}

func eventsCommand(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return withStore(ctx, cfg, func(s *campaigns.Store) error { return eventsList(ctx, s, stdout) })
	}
	switch args[0] {
	case "create":
		return eventCreate(ctx, cfg, args[1:], stdout)
	case "update":
		return eventUpdate(ctx, cfg, args[1:], stdout)
	case "show":
		return eventShow(ctx, cfg, args[1:], stdout)
	}
	return usageError(eventsUsage)
}

func eventsList(ctx context.Context, s *campaigns.Store, stdout io.Writer) error {
	events, err := s.Events(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTART\tTITLE\tSEQUENCE")
	for _, e := range events {
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%d\n", e.ID, e.Start.Format("2006-01-02 15:04"), e.TZ, oneLine(e.Title), e.Sequence)
	}
	return tw.Flush()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func eventCreate(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	const cmd = "events create"
	f := newEventFlags(cmd)
	pos, err := parseFlags(f.fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fmt.Sprintf("%s: unexpected %q (quote values with spaces)", cmd, join(pos)))
	}
	set := f.given()
	var missing []string
	for _, name := range []string{"title", "start", "end", "tz"} {
		if !set[name] {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return usageError(fmt.Sprintf(`%s: %s required, e.g. --title "CSR day" --start "2027-03-09 09:00" --end "2027-03-09 17:00" --tz Europe/Berlin`,
			cmd, strings.Join(missing, ", ")))
	}
	if err := f.check(cmd, set); err != nil {
		return err
	}
	start, err := eventTime(cmd, "start", *f.start, *f.tz)
	if err != nil {
		return err
	}
	end, err := eventTime(cmd, "end", *f.end, *f.tz)
	if err != nil {
		return err
	}
	if !end.After(start) {
		return usageError(fmt.Sprintf("%s: --end %s is not after --start %s", cmd, *f.end, *f.start))
	}
	return withStore(ctx, cfg, func(s *campaigns.Store) error {
		e, err := s.CreateEvent(ctx, campaigns.Event{Title: *f.title, Description: *f.description, Place: *f.place, URL: *f.link,
			Organizer: *f.organizer, Start: start, End: end, TZ: *f.tz})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, e.ID)
		return nil
	})
}

func eventUpdate(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	const cmd = "events update"
	f := newEventFlags(cmd)
	notify := f.fs.Bool("notify", false, "mail the update to everybody a campaign has sent the event to")
	pos, err := parseFlags(f.fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(cmd + ": want one event id, and the flags to change")
	}
	set := f.given()
	delete(set, "notify")
	if len(set) == 0 {
		return usageError(cmd + ": nothing to change: give --title, --description, --place, --url, --organizer, --start, --end or --tz")
	}
	if err := f.check(cmd, set); err != nil {
		return err
	}
	return withStore(ctx, cfg, func(s *campaigns.Store) error {
		cur, err := s.Event(ctx, pos[0])
		if err != nil {
			return err
		}
		tz := cur.TZ
		if set["tz"] {
			tz = *f.tz
		}
		loc, err := eventZone(tz)
		if err != nil {
			return err
		}
		var start, end time.Time
		if set["start"] {
			if start, err = eventTime(cmd, "start", *f.start, tz); err != nil {
				return err
			}
		}
		if set["end"] {
			if end, err = eventTime(cmd, "end", *f.end, tz); err != nil {
				return err
			}
		}
		e, err := s.UpdateEvent(ctx, pos[0], func(e *campaigns.Event) {
			str := map[string]*string{"title": &e.Title, "description": &e.Description, "place": &e.Place, "url": &e.URL, "organizer": &e.Organizer}
			from := map[string]*string{"title": f.title, "description": f.description, "place": f.place, "url": f.link, "organizer": f.organizer}
			for name, dst := range str {
				if set[name] {
					*dst = *from[name]
				}
			}
			if set["tz"] && e.TZ != tz {
				e.Start, e.End, e.TZ = sameWallTime(e.Start, loc), sameWallTime(e.End, loc), tz
			}
			switch {
			case set["start"] && !set["end"]:
				e.Start, e.End = start, start.Add(e.End.Sub(e.Start))
			case set["start"]:
				e.Start, e.End = start, end
			case set["end"]:
				e.End = end
			}
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "event %s: sequence %d, %s\n", e.ID, e.Sequence, e.When("en"))
		f, err := s.FollowEvent(ctx, e, *notify)
		if err != nil {
			return err
		}
		for _, c := range f.Moved {
			due := ""
			if !c.SendAt.After(time.Now()) {
				due = " (already due: it goes as soon as it is started)"
			}
			fmt.Fprintf(stdout, "reminder: campaign %d now goes at %s%s\n", c.ID, c.SendAt.Local().Format("2006-01-02 15:04 MST"), due)
		}
		switch {
		case f.Update != nil:
			fmt.Fprintf(stdout, "update: campaign %d to the %d people campaigns %s sent the event to (list %s), started\n",
				f.Update.ID, f.People, joinIDs(f.Invited), f.Update.Lists[0])
		case len(f.Invited) > 0 && !*notify:
			fmt.Fprintf(stdout, "campaigns %s sent the event to people: add --notify to send them this update\n", joinIDs(f.Invited))
		}
		return nil
	})
}

// sameWallTime is t's clock reading in another zone: moving an event to the zone it was meant to be in.
func sameWallTime(t time.Time, loc *time.Location) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc)
}

func eventShow(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("events show", flag.ContinueOnError)
	ics := fl.Bool("ics", false, "print the event as an iCalendar (.ics) file")
	lang := fl.String("lang", "en", "the language of the date line: en, de, it, fr or es")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("events show: want one event id")
	}
	return withStore(ctx, cfg, func(s *campaigns.Store) error {
		e, err := s.Event(ctx, pos[0])
		if err != nil {
			return err
		}
		if *ics {
			data, err := e.ICS(campaigns.EventDomain(cfg.PublicURL), time.Now())
			if err != nil {
				return err
			}
			_, err = stdout.Write(data)
			return err
		}
		links := e.CalendarLinks(strings.TrimRight(cfg.PublicURL, "/") + "/events/" + e.ID + ".ics")
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, row := range [][2]string{{"id", e.ID}, {"title", e.Title}, {"when", e.When(*lang)}, {"place", e.Place}, {"url", e.URL},
			{"organizer", e.Organizer}, {"description", oneLine(e.Description)}, {"sequence", fmt.Sprint(e.Sequence)},
			{"google", links.Google}, {"outlook", links.Outlook}, {"ics", links.ICS}} {
			if row[1] != "" {
				fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
			}
		}
		return tw.Flush()
	})
}

// joinIDs writes campaign ids as "1, 4 and 7".
func joinIDs(ids []int64) string {
	out := ""
	for i, id := range ids {
		switch {
		case i == 0:
		case i == len(ids)-1:
			out += " and "
		default:
			out += ", "
		}
		out += strconv.FormatInt(id, 10)
	}
	return out
}
