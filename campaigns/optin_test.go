package campaigns

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/mail"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
	"csrdesk/internal/smtptest"
)

var testSecret = []byte("secret")

// mustSubscriptions serves the public pages of a store with a public list "news", mailing through sink.
func mustSubscriptions(t *testing.T, sink *smtptest.Sink) (*Store, *Subscriptions, *httptest.Server) {
	t.Helper()
	s := NewStore(redisSrv.Client(t))
	if err := s.CreateList(context.Background(), List{Name: "news", Public: true, Title: "News and events"}); err != nil {
		t.Fatal(err)
	}
	tr, err := ParseSMTP("smtp://" + sink.Addr + "?tls=none")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := NewSubscriptions(s, tr, SubscriptionsConfig{PublicURL: "https://platform.example", From: "news@platform.example", Secret: testSecret},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sub.Handler())
	t.Cleanup(srv.Close)
	return s, sub, srv
}

func mustActive(t *testing.T, s *Store, emails ...string) {
	t.Helper()
	csv := "email,name,language\n"
	for _, e := range emails {
		csv += e + ",Person,de\n"
	}
	if _, err := s.Import(context.Background(), strings.NewReader(csv), ImportOptions{List: "news", Confirmed: true}); err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, s *Store, email string) string {
	t.Helper()
	sub, err := s.Subscriber(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return sub.Status
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	res, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func TestOneClickUnsubscribe(t *testing.T) {
	s, _, srv := mustSubscriptions(t, smtptest.New(t))
	mustActive(t, s, "anna@example.it", "bruno@example.it")
	token := tokenOf(t, s, testSecret, "anna@example.it")
	other := tokenOf(t, s, testSecret, "bruno@example.it")

	// RFC 8058: the mail client posts List-Unsubscribe=One-Click, with no cookie and no login.
	forged := map[string]string{
		"altered mac":           token[:len(token)-2] + "00",
		"another subscriber":    strings.Split(other, "~")[0] + "~" + strings.Split(token, "~")[1],
		"made with another key": tokenOf(t, s, []byte("guess"), "bruno@example.it"),
		"truncated":             token[:10],
	}
	for name, tok := range forged {
		code, body := post(t, http.DefaultClient, srv.URL+"/unsubscribe/"+tok, url.Values{"List-Unsubscribe": {"One-Click"}})
		if code != http.StatusBadRequest || !strings.Contains(body, "This link is not valid") || !strings.Contains(body, "Nothing was changed") {
			t.Errorf("%s: %d\n%s", name, code, body)
		}
	}
	if st := status(t, s, "anna@example.it") + status(t, s, "bruno@example.it"); st != "activeactive" {
		t.Fatalf("a forged token changed something: %s", st)
	}
	code, body := post(t, http.DefaultClient, srv.URL+"/unsubscribe/"+token, url.Values{"List-Unsubscribe": {"One-Click"}})
	if code != http.StatusOK || status(t, s, "anna@example.it") != Unsubscribed || status(t, s, "bruno@example.it") != Active {
		t.Fatalf("one-click: %d %q", code, body)
	}
	consents, _ := s.Consents(context.Background(), "anna@example.it")
	if last := consents[len(consents)-1]; last.Action != "unsubscribed" || last.Via != "one-click" {
		t.Errorf("consent history: %+v", consents)
	}
	// Again: still fine, nothing more recorded.
	if code, _ := post(t, http.DefaultClient, srv.URL+"/unsubscribe/"+token, url.Values{"List-Unsubscribe": {"One-Click"}}); code != http.StatusOK {
		t.Errorf("second one-click: %d", code)
	}
	if again, _ := s.Consents(context.Background(), "anna@example.it"); len(again) != len(consents) {
		t.Errorf("the second one-click recorded more: %+v", again[len(consents):])
	}
	// A plain POST without the one-click body or the page's CSRF token changes nothing.
	code, body = post(t, http.DefaultClient, srv.URL+"/unsubscribe/"+other, nil)
	if code != http.StatusBadRequest || status(t, s, "bruno@example.it") != Active || !strings.Contains(body, `class="error"`) {
		t.Errorf("post without csrf: %d, %s", code, status(t, s, "bruno@example.it"))
	}
	// The page in the subscriber's language (German), with the button, preferences and data.
	res, _ := http.Get(srv.URL + "/unsubscribe/" + other)
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`lang="de"`, `action="/unsubscribe/` + other + `"`, `action="/preferences/`, `action="/export/`, `name="csrf"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page lacks %s:\n%s", want, page)
		}
	}
	// Once Bruno is erased, his link says so, to a one-click too.
	if err := s.Erase(context.Background(), "bruno@example.it"); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, http.DefaultClient, srv.URL+"/unsubscribe/"+other, url.Values{"List-Unsubscribe": {"One-Click"}}); code != http.StatusNotFound || !strings.Contains(body, "holds no subscription") {
		t.Errorf("one-click of an erased subscriber: %d\n%s", code, body)
	}
}

func compiles(t *testing.T) func(Content) error {
	layout := mustLayout(t)
	return func(c Content) error { _, err := Compile(c, layout); return err }
}

func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

// csrfFrom loads a page and returns the CSRF token its form carries.
func csrfFrom(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]{32})"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf token in %s:\n%s", u, body)
	}
	return string(m[1])
}

func TestDoubleOptIn(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	s, _, srv := mustSubscriptions(t, sink)
	c := browser(t)
	csrf := csrfFrom(t, c, srv.URL+"/subscribe?lang=it")
	form := url.Values{"csrf": {csrf}, "email": {" Giulia@Example.IT "}, "name": {"Giulia <b>"}, "language": {"it"}, "list": {"news"}}

	code, body := post(t, c, srv.URL+"/subscribe", form) // no consent ticked
	if code != http.StatusBadRequest || !strings.Contains(body, `class="error"`) || strings.Contains(body, "<b>") {
		t.Fatalf("without consent: %d\n%s", code, body)
	}
	bad := url.Values{"email": {"x@example.it"}, "consent": {"yes"}, "csrf": {"0123456789abcdef0123456789abcdef"}}
	if code, _ := post(t, c, srv.URL+"/subscribe", bad); code != http.StatusBadRequest {
		t.Errorf("forged csrf: %d", code)
	}
	form.Set("consent", "yes")
	code, body = post(t, c, srv.URL+"/subscribe", form)
	if code != http.StatusOK || !strings.Contains(body, "giulia@example.it") {
		t.Fatalf("subscribe: %d\n%s", code, body)
	}
	if got := status(t, s, "giulia@example.it"); got != Unconfirmed {
		t.Fatalf("status before confirming: %s", got)
	}
	msg := mustParseMail(t, sink.Message("giulia@example.it"))
	link := regexp.MustCompile(`https://platform\.example(/confirm/[A-Za-z0-9_.-]+)`).FindStringSubmatch(msg.parts["text/plain"])
	if link == nil || msg.header.Get("Subject") != "Conferma la tua iscrizione" {
		t.Fatalf("confirmation mail: %v\n%s", msg.header, msg.parts["text/plain"])
	}

	// An unconfirmed subscriber receives no campaign.
	mustActive(t, s, "max@example.de")
	c1, err := s.CreateCampaign(ctx, Campaign{Name: "n", Lists: []string{"news"}, From: "news@platform.example",
		Content: Content{Subject: map[string]string{"": "News"}, Body: map[string]string{"": "Hello {{.Subscriber.Name}}"}}}, compiles(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Transition(ctx, c1.ID, "start")
	stop := run(t, testWorker(t, s, sink.Addr, DefaultWorkerConfig()))
	st := waitState(t, s, c1.ID, Finished)
	stop()
	if st.Sent != 1 || sink.Got("max@example.de") != 1 || sink.Got("giulia@example.it") != 1 { // 1: the confirmation only
		t.Errorf("campaign to an unconfirmed subscriber: %+v, giulia got %d", st, sink.Got("giulia@example.it"))
	}

	// The link shows a button (mail scanners open links); the button confirms.
	if code, _ := post(t, c, srv.URL+link[1], nil); code != http.StatusBadRequest || status(t, s, "giulia@example.it") != Unconfirmed {
		t.Errorf("confirm without the page's token: %d", code)
	}
	csrf = csrfFrom(t, c, srv.URL+link[1])
	if code, body := post(t, c, srv.URL+link[1][:len(link[1])-3]+"abc", url.Values{"csrf": {csrf}}); code != http.StatusBadRequest || !strings.Contains(body, "This link is not valid") {
		t.Errorf("altered confirmation link: %d\n%s", code, body)
	}
	code, body = post(t, c, srv.URL+link[1], url.Values{"csrf": {csrf}})
	if code != http.StatusOK || status(t, s, "giulia@example.it") != Active {
		t.Fatalf("confirm: %d\n%s", code, body)
	}
	consents, _ := s.Consents(ctx, "giulia@example.it")
	if len(consents) != 2 || consents[0].Action != "requested" || consents[0].Via != "form" || !strings.Contains(consents[0].Text, "RSI") ||
		consents[1].Action != "confirmed" || consents[0].At.IsZero() {
		t.Errorf("consent history: %+v", consents)
	}
	sub, _ := s.Subscriber(ctx, "giulia@example.it")
	if sub.Name != "Giulia <b>" || sub.Language != "it" {
		t.Errorf("subscriber: %+v", sub)
	}
}

func TestConfirmationMailsAreLimited(t *testing.T) {
	sink := smtptest.New(t)
	_, sub, _ := mustSubscriptions(t, sink)
	for i := range 4 {
		err := sub.Subscribe(context.Background(), Subscription{Email: "flood@example.com", Via: "api"})
		if i < 3 && err != nil || i == 3 && !errors.Is(err, ErrTooMany) {
			t.Errorf("request %d: %v", i+1, err)
		}
	}
	if got := sink.Got("flood@example.com"); got != 3 {
		t.Errorf("%d confirmation mails, want 3", got)
	}
}

func TestImportMarksConfirmedOnlyWhenAsked(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "news")
	s.Import(ctx, strings.NewReader("email\na@example.com\n"), ImportOptions{List: "news", Source: "fair.csv"})
	s.Import(ctx, strings.NewReader("email\nb@example.com\n"), ImportOptions{List: "news", Source: "signed.csv", Confirmed: true})
	if a, b := status(t, s, "a@example.com"), status(t, s, "b@example.com"); a != Unconfirmed || b != Active {
		t.Errorf("statuses %s, %s", a, b)
	}
	consents, _ := s.Consents(ctx, "b@example.com")
	if len(consents) != 1 || consents[0].Via != "import" || consents[0].Source != "signed.csv" || !strings.Contains(consents[0].Text, "--confirmed") {
		t.Errorf("consent of a confirmed import: %+v", consents)
	}
}

// TestEraseLeavesNoPersonalData scans every key and value in Redis after an erasure.
func TestEraseLeavesNoPersonalData(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	sink.TempFail("anna.rossi@example.it", 1)
	s, _, _ := mustSubscriptions(t, sink)
	s.CreateList(ctx, List{Name: "events"})
	csv := "email,name,company,city\nanna.rossi@example.it,Anna Rossi,Rossi Meccanica,Brescia\nmax@example.de,Max,,Köln\n"
	for _, l := range []string{"news", "events"} {
		if _, err := s.Import(ctx, strings.NewReader(csv), ImportOptions{List: l, Confirmed: true}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetPreferences(ctx, "anna.rossi@example.it", Preferences{Lists: []string{"news"}, Language: "it"})
	c, err := s.CreateCampaign(ctx, Campaign{Name: "n", Lists: []string{"news", "events"}, From: "news@platform.example",
		Content: Content{Subject: map[string]string{"": "News"}, Body: map[string]string{"": "Hello"}}}, compiles(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Transition(ctx, c.ID, "start")
	cfg := DefaultWorkerConfig()
	cfg.RetryBase = 10 * time.Millisecond
	stop := run(t, testWorker(t, s, sink.Addr, cfg))
	waitState(t, s, c.ID, Finished)
	stop()
	sub, _ := s.Subscriber(ctx, "anna.rossi@example.it")
	data, err := s.PersonalData(ctx, "anna.rossi@example.it")
	if err != nil || len(data.Mailings) != 1 || data.Mailings[0].Outcome != "sent" || len(data.Consent) < 2 || len(data.Lists) != 2 {
		t.Fatalf("personal data before erasure: %+v %v", data, err)
	}

	if err := s.Erase(ctx, "Anna.Rossi@example.it"); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"anna.rossi@example.it", "Anna Rossi", "Rossi Meccanica", "Brescia", sub.ID} {
		if where := findInRedis(t, s, secret); where != "" {
			t.Errorf("%q still in Redis: %s", secret, where)
		}
	}
	if where := findInRedis(t, s, "max@example.de"); where == "" {
		t.Error("the other subscriber was erased too")
	}
	if st, _ := s.CampaignStatus(ctx, c.ID); st.Sent != 2 {
		t.Errorf("campaign counts after the erasure: %+v", st)
	}
	if _, err := s.PersonalData(ctx, "anna.rossi@example.it"); !errors.Is(err, ErrNotFound) {
		t.Errorf("personal data after erasure: %v", err)
	}
	rep, err := s.Import(ctx, strings.NewReader(csv), ImportOptions{List: "news", Confirmed: true})
	if err != nil || rep.Added != 0 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "line 2: anna.rossi@example.it asked to be erased") {
		t.Errorf("re-import of an erased address: %+v %v", rep, err)
	}
}

// findInRedis returns the first key whose name or value contains s, with its type.
func findInRedis(t *testing.T, st *Store, s string) string {
	t.Helper()
	ctx := context.Background()
	rc := st.rdb
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, s) {
			return k
		}
		var values []string
		switch typ := rc.Type(ctx, k).Val(); typ {
		case "string":
			values = []string{rc.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rc.HGetAll(ctx, k).Val() {
				values = append(values, f, v)
			}
		case "set":
			values = rc.SMembers(ctx, k).Val()
		case "zset":
			values = rc.ZRange(ctx, k, 0, -1).Val()
		case "list":
			values = rc.LRange(ctx, k, 0, -1).Val()
		case "stream":
			for _, m := range rc.XRange(ctx, k, "-", "+").Val() {
				values = append(values, fmt.Sprint(m.Values))
			}
		case "none": // deleted since KEYS listed it: a worker may still be finishing a campaign
		default:
			t.Fatalf("key %s of type %s not checked", k, typ)
		}
		for _, v := range values {
			if strings.Contains(v, s) {
				return k
			}
		}
	}
	return ""
}

// parsedMail is a message read with the standard library's MIME parsers: headers and each part's decoded text.
type parsedMail struct {
	header mail.Header
	parts  map[string]string // content type -> decoded body; attachments by file name
}

func mustParseMail(t *testing.T, raw string) parsedMail {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("not a mail message: %v\n%s", err, raw)
	}
	out := parsedMail{header: m.Header, parts: map[string]string{}}
	var walk func(h textproto.MIMEHeader, body io.Reader)
	walk = func(h textproto.MIMEHeader, body io.Reader) {
		mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
		if err != nil {
			t.Fatalf("content type %q: %v", h.Get("Content-Type"), err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatalf("multipart: %v", err)
				}
				walk(p.Header, p)
			}
		}
		var r io.Reader = body
		switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
		case "quoted-printable":
			r = quotedprintable.NewReader(body)
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, body)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("part %s: %v", mt, err)
		}
		key := mt
		if _, p, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && p["filename"] != "" {
			key = p["filename"]
		}
		out.parts[key] = string(data)
	}
	walk(textproto.MIMEHeader(m.Header), m.Body)
	return out
}

func TestInviteUnconfirmedMembers(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	s, subs, srv := mustSubscriptions(t, sink)
	s.CreateList(ctx, List{Name: "fair"}) // not public: staff imported it
	s.Import(ctx, strings.NewReader("email,language\na@example.de,de\nb@example.it,it\nc@example.fr,fr\n"), ImportOptions{List: "fair", Source: "emo-visitors.csv"})
	s.Import(ctx, strings.NewReader("email\nd@example.es\n"), ImportOptions{List: "fair", Confirmed: true})
	rep, err := subs.Invite(ctx, "fair", nil)
	if err != nil || rep != (InviteReport{Sent: 3}) || sink.Got("d@example.es") != 0 {
		t.Fatalf("invite: %+v %v", rep, err)
	}
	if rep, _ := subs.Invite(ctx, "fair", nil); rep != (InviteReport{Recent: 3}) || sink.Got("a@example.de") != 1 {
		t.Errorf("second invite within the week: %+v", rep)
	}
	msg := mustParseMail(t, sink.Message("b@example.it"))
	link := regexp.MustCompile(`https://platform\.example(/confirm/[A-Za-z0-9_.-]+)`).FindStringSubmatch(msg.parts["text/plain"])
	if link == nil || msg.header.Get("Subject") != "Conferma la tua iscrizione" {
		t.Fatalf("invitation: %v", msg.header)
	}
	c := browser(t)
	if code, _ := post(t, c, srv.URL+link[1], url.Values{"csrf": {csrfFrom(t, c, srv.URL+link[1])}}); code != http.StatusOK || status(t, s, "b@example.it") != Active {
		t.Errorf("confirming the invitation: %d", code)
	}
	consents, _ := s.Consents(ctx, "b@example.it")
	if len(consents) != 3 || consents[0].Source != "emo-visitors.csv" || consents[1].Source != "invite to list fair" || consents[2].Action != "confirmed" {
		t.Errorf("consent history: %+v", consents)
	}
}

// An erasure in the middle of a campaign leaves nothing behind and the campaign's counts adding up: a recipient
// already sent to, one waiting to retry, and one still queued.
func TestEraseDuringACampaign(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	sink.TempFail("p00005@example.com", 1)
	s, c := startedFixture(t, 300)
	cfg := DefaultWorkerConfig()
	cfg.Rate, cfg.RetryBase = 100, 3*time.Second // the first batch of 200 takes two seconds
	run(t, testWorker(t, s, sink.Addr, cfg))
	k := campaignKeys(c.ID)
	deadline := time.Now().Add(20 * time.Second)
	for s.rdb.HGet(ctx, k.delivery, "p00001@example.com").Val() != "sent" || s.rdb.HGet(ctx, k.delivery, "p00005@example.com").Val() != "retry" {
		if time.Now().After(deadline) {
			t.Fatal("p00001 not sent or p00005 not waiting to retry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	erased := []string{"p00001@example.com", "p00005@example.com", "p00250@example.com"}
	for _, e := range erased {
		if err := s.Erase(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	st := waitState(t, s, c.ID, Finished)
	if st.Total != 300 || st.Sent != 298 || st.Failed != 2 || st.Retrying != 0 || st.Pending != 0 {
		t.Errorf("counts after erasing three recipients mid-campaign: %+v", st)
	}
	for _, e := range erased {
		if where := findInRedis(t, s, e); where != "" {
			t.Errorf("%s still in %s", e, where)
		}
	}
	if sink.Got("p00250@example.com") != 0 || sink.Got("p00005@example.com") != 0 {
		t.Error("an erased recipient was mailed after the erasure")
	}
}

// The preferences and "send me my data" forms of the unsubscribe link's page.
func TestPreferencesAndExportPages(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	s, _, srv := mustSubscriptions(t, sink)
	mustActive(t, s, "anna@example.it")
	tok := tokenOf(t, s, testSecret, "anna@example.it")
	c := browser(t)
	csrf := csrfFrom(t, c, srv.URL+"/unsubscribe/"+tok)
	if code, _ := post(t, c, srv.URL+"/preferences/"+tok, url.Values{"list": {"news"}, "language": {"fr"}}); code != http.StatusBadRequest {
		t.Errorf("preferences without csrf: %d", code)
	}
	if sub, _ := s.Subscriber(ctx, "anna@example.it"); sub.Language != "de" {
		t.Errorf("preferences without csrf changed the language: %s", sub.Language)
	}
	code, body := post(t, c, srv.URL+"/preferences/"+tok, url.Values{"csrf": {csrf}, "list": {"news"}, "language": {"fr"}})
	if sub, _ := s.Subscriber(ctx, "anna@example.it"); code != 200 || sub.Language != "fr" || !strings.Contains(body, `lang="fr"`) {
		t.Errorf("preferences: %d %s\n%s", code, sub.Language, body)
	}
	if code, _ := post(t, c, srv.URL+"/export/"+tok, nil); code != http.StatusBadRequest || sink.Got("anna@example.it") != 0 {
		t.Errorf("export without csrf: %d, %d mails", code, sink.Got("anna@example.it"))
	}
	if code, _ := post(t, c, srv.URL+"/export/"+tok, url.Values{"csrf": {csrf}}); code != 200 || sink.Got("anna@example.it") != 1 {
		t.Fatalf("export: %d, %d mails", code, sink.Got("anna@example.it"))
	}
	m := mustParseMail(t, sink.Message("anna@example.it"))
	var data PersonalData
	if err := json.Unmarshal([]byte(m.parts["csr-platform-data.json"]), &data); err != nil || data.Email != "anna@example.it" || data.Subscriber == nil || len(data.Consent) < 2 {
		t.Errorf("data mail: %v %+v", err, data)
	}
}

// Erasing a recipient whose job a worker holds, unsent (it died, say), counts it as failed once and takes the job
// back; one whose job is recorded and waits to be trimmed is only deleted; one never read is counted and deleted.
func TestEraseCountsOnlyUnrecordedJobs(t *testing.T) {
	ctx := context.Background()
	s, c := startedFixture(t, 3)
	w := testWorker(t, s, smtptest.New(t).Addr, DefaultWorkerConfig())
	k := campaignKeys(c.ID)
	if err := rdb.EnsureGroup(ctx, s.rdb, k.jobs, workerGroup, "0"); err != nil {
		t.Fatal(err)
	}
	if err := w.schedule(ctx, c); err != nil {
		t.Fatal(err)
	}
	// A worker reads two jobs: it sends and records the first, and holds the second.
	read, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: workerGroup, Consumer: "dead", Streams: []string{k.jobs, ">"}, Count: 2}).Result()
	if err != nil || len(read[0].Messages) != 2 {
		t.Fatalf("read: %v %v", read, err)
	}
	sent, held := read[0].Messages[0], read[0].Messages[1]
	w.commit(ctx, []result{{j: job{c: c, id: sent.ID, email: sent.Values["e"].(string)}, kind: "sent"}})
	for _, m := range []redis.XMessage{sent, held} {
		if err := s.Erase(ctx, m.Values["e"].(string)); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := s.CampaignStatus(ctx, c.ID)
	if st.Total != 3 || st.Sent != 1 || st.Failed != 1 {
		t.Errorf("after erasing a sent recipient and a held one: %+v", st)
	}
	if p := s.rdb.XPending(ctx, k.jobs, workerGroup).Val(); p.Count != 0 {
		t.Errorf("the held job is still pending: %+v", p)
	}
	if n := s.rdb.XLen(ctx, k.jobs).Val(); n != 1 {
		t.Errorf("%d jobs in the stream, want the one never read", n)
	}
	// The third, never read.
	unread := s.rdb.XRange(ctx, k.jobs, "-", "+").Val()[0].Values["e"].(string)
	if err := s.Erase(ctx, unread); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.CampaignStatus(ctx, c.ID); st.Failed != 2 || s.rdb.XLen(ctx, k.jobs).Val() != 0 {
		t.Errorf("after erasing the unread one: %+v, %d jobs", st, s.rdb.XLen(ctx, k.jobs).Val())
	}
}

// A name or company that is not UTF-8 is refused, and nothing is stored: every page and mail shows them as text.
// FuzzPages found that /subscribe stored one.
func TestSubscribeRefusesBrokenUTF8(t *testing.T) {
	s, sub, _ := mustSubscriptions(t, smtptest.New(t))
	err := sub.Subscribe(context.Background(), Subscription{Email: "o@example.de", Company: "Weber \xf4\xf4GmbH", Via: "form"})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Subscribe: %v, want ErrInvalid", err)
	}
	if _, err := s.Subscriber(context.Background(), "o@example.de"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the subscriber was stored: %v", err)
	}
}
