package campaigns

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"csrdesk/internal/smtptest"
)

// sendCampaign creates and runs a campaign to the list "news" until it finishes.
func sendCampaign(t *testing.T, s *Store, sink *smtptest.Sink, event string) *Campaign {
	t.Helper()
	ctx := context.Background()
	c, err := s.CreateCampaign(ctx, Campaign{Name: "emo", Lists: []string{"news"}, From: "news@platform.example", Event: event,
		Content: Content{Subject: map[string]string{"": "Meet us at EMO"}, Body: map[string]string{"": "Dear {{.Subscriber.Name}},\n\ncome to our **CSR day**."}}},
		compiles(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Transition(ctx, c.ID, "start")
	stop := run(t, testWorker(t, s, sink.Addr, DefaultWorkerConfig()))
	waitState(t, s, c.ID, Finished)
	stop()
	return c
}

// TestCampaignMailWithEvent reads a campaign mail with the standard library's MIME parsers and its invitation
// with an independent iCalendar parser, then sends an update of the event.
func TestCampaignMailWithEvent(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	s, _, _ := mustSubscriptions(t, sink)
	mustActive(t, s, "anna@example.it")
	s.SetPreferences(ctx, "anna@example.it", Preferences{Lists: []string{"news"}, Language: "it"})
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ev, err := s.CreateEvent(ctx, Event{Title: "CSR day at EMO", Start: time.Date(2027, 9, 14, 9, 0, 0, 0, berlin), End: time.Date(2027, 9, 14, 17, 0, 0, 0, berlin),
		TZ: "Europe/Berlin", Place: "Messe Hannover, Hall 2", Organizer: "CSR platform <events@platform.example>"})
	if err != nil {
		t.Fatal(err)
	}
	c := sendCampaign(t, s, sink, ev.ID)
	m := mustParseMail(t, sink.Message("anna@example.it"))
	sub, _ := s.Subscriber(ctx, "anna@example.it")
	token := UnsubscribeToken(testSecret, sub)
	h := m.header
	for name, want := range map[string]string{
		"List-Unsubscribe":      "<https://platform.example/unsubscribe/" + token + ">, <mailto:unsubscribe@platform.example?subject=unsubscribe%20" + token + ">",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"Return-Path":           fmt.Sprintf("<bounces+%d-%s@platform.example>", c.ID, sub.ID),
		"Precedence":            "bulk",
		"Subject":               "Meet us at EMO",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if !regexp.MustCompile(fmt.Sprintf(`^<c%d\.[0-9a-f]{16}\.\d+@platform\.example>$`, c.ID)).MatchString(h.Get("Message-Id")) {
		t.Errorf("Message-ID %q", h.Get("Message-Id"))
	}
	text, html := m.parts["text/plain"], m.parts["text/html"]
	for _, want := range []string{"CSR day at EMO", "Quando: mar 14 settembre 2027", "Dove: Messe Hannover, Hall 2", "https://platform.example/events/" + ev.ID + ".ics"} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(html, "https://calendar.google.com/calendar/render?action=TEMPLATE") || !strings.Contains(html, "<strong>CSR day</strong>") {
		t.Errorf("html part:\n%s", html)
	}
	cal := mustICS(t, m.parts["invitation.ics"])
	uid := cal.Props.Get(ical.PropUID).Value
	if uid != ev.ID+"@platform.example" || cal.Props.Get(ical.PropSequence).Value != "0" || icsProp(t, cal, ical.PropLocation) != "Messe Hannover, Hall 2" {
		t.Errorf("invitation: uid %s, sequence %s", uid, cal.Props.Get(ical.PropSequence).Value)
	}
	if start, err := cal.DateTimeStart(time.UTC); err != nil || !start.Equal(ev.Start) {
		t.Errorf("DTSTART %s %v, want %s", start, err, ev.Start)
	}

	// A reminder a day before the event; then the event moves by a week, to another hall. The reminder follows
	// it, and the update goes to everybody invited: the same UID, a higher SEQUENCE, so calendars replace the event.
	rem, err := s.CreateCampaign(ctx, Campaign{Name: "reminder", Lists: []string{"news"}, From: "news@platform.example", Event: ev.ID, SendBefore: 24 * time.Hour,
		Content: Content{Subject: map[string]string{"": "Tomorrow: EMO"}, Body: map[string]string{"": "See you tomorrow."}}}, compiles(t))
	if err != nil {
		t.Fatal(err)
	}
	if rem, err = s.Transition(ctx, rem.ID, "start"); err != nil || rem.State != Scheduled || !rem.SendAt.Equal(ev.Start.Add(-24*time.Hour)) {
		t.Fatalf("reminder: %+v %v", rem, err)
	}
	moved, err := s.UpdateEvent(ctx, ev.ID, func(e *Event) {
		e.Place, e.Start, e.End = "Messe Hannover, Hall 9", e.Start.AddDate(0, 0, 7), e.End.AddDate(0, 0, 7)
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.FollowEvent(ctx, moved, true)
	if err != nil || len(f.Moved) != 1 || f.Moved[0].ID != rem.ID || len(f.Invited) != 1 || f.Invited[0] != c.ID || f.Update == nil || f.People != 1 {
		t.Fatalf("follow-up: %+v %v", f, err)
	}
	if got, _ := s.Campaign(ctx, rem.ID); got.State != Scheduled || !got.SendAt.Equal(moved.Start.Add(-24*time.Hour)) {
		t.Errorf("the reminder did not follow the event: %s at %s, want %s", got.State, got.SendAt, moved.Start.Add(-24*time.Hour))
	}
	stop := run(t, testWorker(t, s, sink.Addr, DefaultWorkerConfig()))
	waitState(t, s, f.Update.ID, Finished)
	stop()
	if n := sink.Got("anna@example.it"); n != 2 {
		t.Fatalf("anna got %d mails, want the invitation and its update", n)
	}
	um := mustParseMail(t, sink.Message("anna@example.it"))
	if got := um.header.Get("Subject"); got != "Updated: Meet us at EMO" {
		t.Errorf("update subject %q", got)
	}
	upd := mustICS(t, um.parts["invitation.ics"])
	if upd.Props.Get(ical.PropUID).Value != uid || upd.Props.Get(ical.PropSequence).Value != "1" || icsProp(t, upd, ical.PropLocation) != "Messe Hannover, Hall 9" {
		t.Errorf("update: uid %s (want %s), sequence %s, location %s", upd.Props.Get(ical.PropUID).Value, uid,
			upd.Props.Get(ical.PropSequence).Value, icsProp(t, upd, ical.PropLocation))
	}
	if start, err := upd.DateTimeStart(time.UTC); err != nil || !start.Equal(moved.Start) {
		t.Errorf("update DTSTART %s %v, want %s", start, err, moved.Start)
	}
	// Nobody else: a second update without notify sends nothing and says who could be told.
	again, _ := s.UpdateEvent(ctx, ev.ID, func(e *Event) { e.Description = "Bring your CSR report." })
	if f, err := s.FollowEvent(ctx, again, false); err != nil || f.Update != nil || len(f.Invited) != 2 {
		t.Errorf("follow-up without notify: %+v %v", f, err)
	}
}

func mustICS(t *testing.T, data string) *ical.Event {
	t.Helper()
	if data == "" {
		t.Fatal("no invitation.ics attachment")
	}
	_, ev := parseICS(t, []byte(data))
	return ev
}

// TestBouncesAndComplaints applies a DSN, a complaint and an unsubscribe mail to the subscribers of a sent campaign.
func TestBouncesAndComplaints(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	s, _, _ := mustSubscriptions(t, sink)
	mustActive(t, s, "anna@example.it", "max@example.de", "lea@example.fr", "ole@example.dk")
	c := sendCampaign(t, s, sink, "")
	in := &Inbound{Store: s, Secret: testSecret, HardBounces: 3}

	// Anna's server accepted the mail, then bounced it: the report names her only through the return path.
	annaMail := mustParseMail(t, sink.Message("anna@example.it"))
	verp := strings.Trim(annaMail.header.Get("Return-Path"), "<>")
	dsn := strings.ReplaceAll(`Return-Path: <>
Delivered-To: `+verp+`
From: MAILER-DAEMON@mx.example.it (Mail Delivery System)
To: `+verp+`
Subject: Undelivered Mail Returned to Sender
Message-Id: <20270101.ABC@mx.example.it>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

The mail could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.it
Arrival-Date: Fri, 1 Jan 2027 10:00:00 +0100

Final-Recipient: rfc822; a.old@mailhost.example.it
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <a.old@mailhost.example.it>: user unknown

--b1
Content-Type: text/rfc822-headers

Message-ID: `+annaMail.header.Get("Message-Id")+`
X-Csrdesk-Campaign: `+fmt.Sprint(c.ID)+`
Subject: Meet us at EMO

--b1--
`, "\n", "\r\n")
	lines, err := in.Apply(ctx, strings.NewReader(dsn))
	if err != nil || len(lines) != 1 || !strings.Contains(lines[0], "anna@example.it") {
		t.Fatalf("dsn: %q %v", lines, err)
	}
	if got := status(t, s, "anna@example.it"); got != Bounced {
		t.Errorf("anna after a 5.1.1 bounce: %s", got)
	}
	st, _ := s.CampaignStatus(ctx, c.ID)
	failures, _ := s.Failures(ctx, c.ID)
	if st.Sent != 3 || st.Failed != 1 || len(failures) != 1 || failures[0].Email != "anna@example.it" || !strings.Contains(failures[0].Reason, "user unknown") {
		t.Errorf("campaign after the bounce: %+v %+v", st, failures)
	}
	// The same report again (a mail server retrying its POST): the campaign counts the failure once.
	if lines, err := in.Apply(ctx, strings.NewReader(dsn)); err != nil || len(lines) != 1 {
		t.Errorf("the same DSN again: %q %v", lines, err)
	}
	if again, _ := s.CampaignStatus(ctx, c.ID); again.Sent != 3 || again.Failed != 1 || status(t, s, "max@example.de") != Active {
		t.Errorf("campaign after the same DSN twice: %+v", again)
	}

	// Max complains to his provider, whose feedback loop reports it.
	maxMail := mustParseMail(t, sink.Message("max@example.de"))
	arf := strings.ReplaceAll(`From: fbl@provider.example
To: `+strings.Trim(maxMail.header.Get("Return-Path"), "<>")+`
Subject: FW: Meet us at EMO
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="f1"

--f1
Content-Type: text/plain

This is an abuse report.

--f1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: provider-fbl/1.0
Version: 1
Original-Rcpt-To: max@example.de

--f1
Content-Type: text/rfc822-headers

To: max@example.de
X-Csrdesk-Campaign: `+fmt.Sprint(c.ID)+`

--f1--
`, "\n", "\r\n")
	if _, err := in.Apply(ctx, strings.NewReader(arf)); err != nil || status(t, s, "max@example.de") != Unsubscribed {
		t.Errorf("complaint: %v, max is %s", err, status(t, s, "max@example.de"))
	}

	// Lea uses the List-Unsubscribe mailto link; Ole's address is in a forged one.
	mailto := "From: lea@example.fr\r\nTo: unsubscribe@platform.example\r\nSubject: unsubscribe " + tokenOf(t, s, testSecret, "lea@example.fr") + "\r\n\r\n"
	forged := "From: x@example.com\r\nTo: unsubscribe@platform.example\r\nSubject: unsubscribe " + tokenOf(t, s, []byte("guess"), "ole@example.dk") + "\r\n\r\n"
	in.Apply(ctx, strings.NewReader(mailto))
	in.Apply(ctx, strings.NewReader(forged))
	if lea, ole := status(t, s, "lea@example.fr"), status(t, s, "ole@example.dk"); lea != Unsubscribed || ole != Active {
		t.Errorf("unsubscribe mails: lea %s, ole %s", lea, ole)
	}
	if _, err := in.Apply(ctx, strings.NewReader("From: a@example.com\r\nSubject: Thanks!\r\n\r\nSee you there.")); err == nil {
		t.Error("an ordinary reply was taken for a report")
	}
}

// A report whose return path carries a made-up subscriber id changes nothing, whatever address it names.
func TestForgedReportsWithAnUnknownIDChangeNothing(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	s, _, _ := mustSubscriptions(t, sink)
	mustActive(t, s, "anna@example.it", "max@example.de")
	c := sendCampaign(t, s, sink, "")
	in := &Inbound{Store: s, Secret: testSecret, HardBounces: 3}
	for _, kind := range []string{"dsn", "arf"} {
		var msg string
		if kind == "dsn" {
			msg = fmt.Sprintf("From: MAILER-DAEMON@mx.attacker.example\r\nTo: bounces+%d-aaaaaaaaaa@platform.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"+
				"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"+
				"Reporting-MTA: dns; mx.attacker.example\r\n\r\nFinal-Recipient: rfc822; max@example.de\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n", c.ID)
		} else {
			msg = fmt.Sprintf("From: fbl@attacker.example\r\nTo: bounces+%d-aaaaaaaaaa@platform.example\r\nSubject: FW\r\nMIME-Version: 1.0\r\n"+
				"Content-Type: multipart/report; report-type=feedback-report; boundary=f\r\n\r\n--f\r\nContent-Type: message/feedback-report\r\n\r\n"+
				"Feedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: anna@example.it\r\n\r\n--f--\r\n", c.ID)
		}
		lines, err := in.Apply(ctx, strings.NewReader(msg))
		if err != nil || len(lines) != 1 || !strings.Contains(lines[0], "no such subscriber") {
			t.Errorf("%s: %q %v", kind, lines, err)
		}
	}
	if m, a := status(t, s, "max@example.de"), status(t, s, "anna@example.it"); m != Active || a != Active {
		t.Errorf("forged reports with an unknown subscriber id changed: max %s, anna %s", m, a)
	}
	if st, _ := s.CampaignStatus(ctx, c.ID); st.Failed != 0 {
		t.Errorf("campaign counts changed: %+v", st)
	}
}

// A campaign still being sent when its event changes sends the new version from then on: a worker that has
// compiled the campaign notices the event's new sequence.
func TestRunningCampaignFollowsItsEvent(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	s, _, _ := mustSubscriptions(t, sink)
	mustActive(t, s, "anna@example.it")
	ev, err := s.CreateEvent(ctx, Event{Title: "CSR day", Start: time.Date(2027, 9, 14, 9, 0, 0, 0, time.UTC), End: time.Date(2027, 9, 14, 17, 0, 0, 0, time.UTC),
		TZ: "UTC", Place: "Hall 2"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateCampaign(ctx, Campaign{Name: "emo", Lists: []string{"news"}, From: "news@platform.example", Event: ev.ID,
		Content: Content{Subject: map[string]string{"": "Meet us"}, Body: map[string]string{"": "Come."}}}, compiles(t))
	if err != nil {
		t.Fatal(err)
	}
	w := testWorker(t, s, sink.Addr, DefaultWorkerConfig())
	if _, err := w.mailing(ctx, c); err != nil { // compiled with the event as it is
		t.Fatal(err)
	}
	if _, err := s.UpdateEvent(ctx, ev.ID, func(e *Event) { e.Place = "Hall 9" }); err != nil {
		t.Fatal(err)
	}
	s.Transition(ctx, c.ID, "start")
	run(t, w)
	waitState(t, s, c.ID, Finished)
	cal := mustICS(t, mustParseMail(t, sink.Message("anna@example.it")).parts["invitation.ics"])
	if cal.Props.Get(ical.PropSequence).Value != "1" || icsProp(t, cal, ical.PropLocation) != "Hall 9" {
		t.Errorf("sent sequence %s, location %s; want the update", cal.Props.Get(ical.PropSequence).Value, icsProp(t, cal, ical.PropLocation))
	}
}
