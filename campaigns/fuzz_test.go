package campaigns

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// dataRecords counts the records after the header that are not blank, as encoding/csv reads them: each is a
// subscriber added or updated, or a problem in the report of an import. ok is false when encoding/csv finds a
// broken record.
func dataRecords(data []byte) (n int, ok bool) {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))))
	r.FieldsPerRecord = -1
	for i := 0; ; i++ {
		rec, err := r.Read()
		switch {
		case err == io.EOF:
			return n, true
		case err != nil:
			return n, false
		case i == 0, len(rec) == 1 && strings.TrimSpace(rec[0]) == "":
			continue // the header, a blank line
		}
		n++
	}
}

// FuzzCSVReader reads arbitrary bytes with the import's CSV reader. Where encoding/csv reads them without an
// error, csvReader reads the same records from the same lines; always, it accounts for every line once: as part
// of a record, as the line of a broken record, or as an empty line.
func FuzzCSVReader(f *testing.F) {
	f.Add([]byte(importCSV))
	f.Add([]byte("email,name,company\r\n\"jo@example.de\",\"Jo \"\"JJ\"\" Weber\",\"Weber\r\nGmbH\"\r\nlea@example.es,Lea,\r\n"))
	f.Add([]byte("a,b\n\"unclosed,x\nc,d\n\"q\"x,y\ne,\"f\"\"\"\n\r\n\n\"g\ng\",h"))
	f.Add([]byte("\xEF\xBB\xBFa,\"b\"\"c\"\r\nd,e\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		body := bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
		lines := bytes.Split(body, []byte("\n"))
		if len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1] // the file ends with a line break
		}
		read := 0
		r := newCSVReader(bytes.NewReader(data), func(n int) { read += n })
		var got [][]string
		var starts []int
		covered := 0 // every line up to this one is accounted for
		broken := false
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			first, last := rec.first, rec.last
			var ce *csvError
			if errors.As(err, &ce) {
				first, last, broken = ce.line, ce.line, true
			} else if err != nil {
				t.Fatal(err)
			} else {
				got, starts = append(got, rec.fields), append(starts, rec.first)
			}
			if first <= covered || last < first || last > len(lines) {
				t.Fatalf("a record on lines %d-%d after line %d, of %d lines", first, last, covered, len(lines))
			}
			for l := covered + 1; l < first; l++ {
				if len(bytes.TrimSuffix(lines[l-1], []byte("\r"))) != 0 {
					t.Fatalf("line %d, %q, is in no record and not empty", l, lines[l-1])
				}
			}
			covered = last
		}
		for l := covered + 1; l <= len(lines); l++ {
			if len(bytes.TrimSuffix(lines[l-1], []byte("\r"))) != 0 {
				t.Fatalf("line %d, %q, is in no record and not empty", l, lines[l-1])
			}
		}
		if read != len(body) {
			t.Errorf("progress counted %d bytes of %d", read, len(body))
		}
		if len(data) > maxRecord {
			return // csvReader takes no record that long
		}
		cr := csv.NewReader(bytes.NewReader(body))
		cr.FieldsPerRecord = -1
		var want [][]string
		var wantStarts []int
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
			line, _ := cr.FieldPos(0)
			want, wantStarts = append(want, rec), append(wantStarts, line)
		}
		if broken {
			t.Fatalf("encoding/csv reads %q, csvReader found a broken record", data)
		}
		if !slices.EqualFunc(want, got, slices.Equal) || !slices.Equal(wantStarts, starts) {
			t.Fatalf("encoding/csv reads %q from lines %v, csvReader %q from %v", want, wantStarts, got, starts)
		}
	})
}

// checkSubscribers fails t for every stored subscriber whose fields are not what csrdesk stores: a valid address
// in normal form, and valid UTF-8 throughout.
func checkSubscribers(t *testing.T, s *Store) int {
	t.Helper()
	ctx := context.Background()
	emails, err := s.rdb.ZRange(ctx, subsKey, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range emails {
		if n, err := NormalizeEmail(e); err != nil || n != e {
			t.Errorf("stored address %q is not in normal form: NormalizeEmail gives %q, %v", e, n, err)
		}
		v, err := s.rdb.HGetAll(ctx, subKey(e)).Result()
		if err != nil {
			t.Fatal(err)
		}
		for k, val := range v {
			if !utf8.ValidString(val) {
				t.Errorf("subscriber %q: %s %q is not valid UTF-8", e, k, val)
			}
		}
	}
	return len(emails)
}

// FuzzImport imports arbitrary bytes as a subscriber CSV. Besides not crashing, an import keeps the promise of
// its report: every data record is added, updated or reported as a problem on its line, and what it stores is
// valid.
func FuzzImport(f *testing.F) {
	f.Add([]byte(importCSV))
	f.Add([]byte("email\nana@example.es\n"))
	f.Add([]byte("email,name,company\r\n\"jo@example.de\",\"Jo \"\"JJ\"\" Weber\",\"Weber\r\nGmbH\"\r\nlea@example.es,Lea,\r\n"))
	f.Add([]byte("email,name\nerased@example.com,Gone\nkeep@example.com,Kept\nKEEP@example.com,Again\n"))
	f.Add([]byte("Email,Sector\n\"a@example.com\",x\nb@example.com,\"unterminated\n"))
	s := mustStore(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := s.rdb.FlushDB(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateList(ctx, List{Name: "events"}); err != nil {
			t.Fatal(err)
		}
		if err := s.rdb.SAdd(ctx, suppressedKey, SuppressionHash("erased@example.com")).Err(); err != nil {
			t.Fatal(err)
		}
		rep, err := s.Import(ctx, bytes.NewReader(data), ImportOptions{List: "events", Confirmed: true})
		if err != nil {
			if !strings.Contains(err.Error(), "line ") {
				t.Errorf("import error %q does not say on which line", err)
			}
			return
		}
		// Where encoding/csv reads the whole file, the import takes the same records; where it does not, the
		// import goes on after a broken record, so it accounts for more than encoding/csv reads.
		if want, ok := dataRecords(data); ok {
			if got := rep.Added + rep.Updated + rep.Unchanged + rep.NotImported; got != want {
				t.Errorf("%d data records, the report accounts for %d: %+v", want, got, rep)
			}
		}
		if len(rep.Problems) != rep.NotImported {
			t.Errorf("%d problems listed, %d counted", len(rep.Problems), rep.NotImported)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, p := range append(rep.Problems, rep.Warnings...) {
			var n int
			if _, err := fmt.Sscanf(p, "line %d:", &n); err != nil || n < 2 || n > lines {
				t.Errorf("%q does not name a data line (2 to %d)", p, lines)
			}
		}
		members, err := s.rdb.ZCard(ctx, membersKey("events")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if stored := checkSubscribers(t, s); int64(stored) != members || stored != rep.Stored() {
			t.Errorf("%d subscribers stored, %d on the list, the report says %d added and %d updated", stored, members, rep.Added, rep.Updated)
		}
	})
}

// FuzzCompile compiles arbitrary campaign content and renders it for a few subscribers: a template must give an
// error (ErrInvalid, which the API answers with 400) or a message, never a crash.
func FuzzCompile(f *testing.F) {
	f.Add("", "News for {{.Subscriber.Company}}", "de", "Dear {{.Subscriber.Name}} in {{index .Subscriber.Attrs \"city\"}},\n\n- **bold** item\n- [link](https://example.com/?a=1&b=2)\n\n{{if .Subscriber.Attrs.vip}}VIP{{end}}", "Liebe/r {{.Subscriber.Name}}")
	f.Add("", "Invitation: CSR day at EMO", "it", "Dear {{.Subscriber.Name}},\n\nJoin us at **EMO**. {{.UnsubscribeURL}}", "Gentile {{.Subscriber.Name}}")
	f.Add("", "Hi {{.Subscriber.Nmae}}", "", "Hi {{range}}", "")
	f.Add("", "{{with .Subscriber}}{{.Email}}{{end}}", "fr", "<script>alert(1)</script> {{printf \"%q\" .Subscriber.Role}}", "{{template \"x\"}}")
	layout := mustLayout(f)
	subscribers := []*Subscriber{
		sample,
		{Email: "x@example.com", Name: `<b>Bo</b> & "Co"`, Company: "Acme", Language: "de", Attrs: map[string]string{"city": "Lyon", "vip": "yes"}},
		{Email: "y@example.com", Language: "zz", Attrs: map[string]string{}},
	}
	f.Fuzz(func(t *testing.T, subjectLang, subject, bodyLang, body, variant string) {
		c := Content{Subject: map[string]string{subjectLang: subject}, Body: map[string]string{"": body, bodyLang: variant}}
		m, err := Compile(c, layout)
		if err != nil {
			if m != nil {
				t.Error("a mailing with an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			return
		}
		for _, sub := range subscribers {
			m.Render(sub, "https://platform.example/unsubscribe/tok") // an error is fine: a template may fail on some data
		}
	})
}

// apiRoutes are the API's routes that take input, with {p} for the fuzzed path or query parameter.
var apiRoutes = []struct{ method, path string }{
	{"POST", "/api/lists"},
	{"POST", "/api/subscribe"},
	{"POST", "/api/inbound"},
	{"POST", "/api/lists/{p}/subscribers"},
	{"GET", "/api/lists/{p}/subscribers"},
	{"POST", "/api/campaigns"},
	{"POST", "/api/campaigns/{p}/test"},
	{"POST", "/api/campaigns/1/{p}"},
	{"GET", "/api/campaigns/{p}/status"},
	{"GET", "/api/campaigns/1/preview?subscriber={p}"},
	{"GET", "/api/subscribers/{p}"},
	{"DELETE", "/api/subscribers/{p}"},
}

// resetMailer empties the store and sets up what the requests of a fuzz target can name: a public list "news"
// with a subscriber, and campaign 1 to it.
func resetMailer(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateList(ctx, List{Name: "news", Public: true, Title: "News and events"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, strings.NewReader("email,name,language\nanna@example.it,Anna,it\n"), ImportOptions{List: "news", Confirmed: true}); err != nil {
		t.Fatal(err)
	}
	layout := mustLayout(t)
	content := Content{Subject: map[string]string{"": "News"}, Body: map[string]string{"": "Dear {{.Subscriber.Name}}", "it": "Cara/o {{.Subscriber.Name}}"}}
	if _, err := s.CreateCampaign(ctx, Campaign{Name: "news", Lists: []string{"news"}, From: "news@platform.example", Content: content},
		func(c Content) error { _, err := Compile(c, layout); return err }); err != nil {
		t.Fatal(err)
	}
}

// FuzzAPI sends arbitrary bodies and path parameters to the JSON API's routes, authorised. The API must not
// crash, and it answers bad input with a 4xx: a 5xx would say the platform failed where the request was wrong.
func FuzzAPI(f *testing.F) {
	seeds := []struct {
		route uint8
		param string
		body  string
	}{
		{0, "", `{"name":"events","title":"Events","public":true}`},
		{1, "", `{"email":"jo@example.de","language":"de","source":"fair app","lists":["news"]}`},
		{2, "", "From: a@example.com\r\nSubject: unsubscribe " + UnsubscribeToken(testSecret, &Subscriber{ID: "anna234567", Email: "anna@example.it"}) + "\r\n\r\n"},
		{2, "", dsnMessage(failedStatus, ourHeaders)},
		{3, "news", "email,name,language\nana@example.es,Ana,es\nbad,,\n"},
		{4, "news", ""},
		{5, "", `{"name":"n","subject":"News","body":"Hi {{.Subscriber.Name}}","bodies":{"es":"Hola {{.Subscriber.Name}}"},"lists":["news"],"from":"n@p.example","segment":"Country == \"DE\""}`},
		{6, "1", `{"to":"me@p.example"}`},
		{7, "start", ""},
		{8, "1", ""},
		{9, "anna@example.it", ""},
		{10, "anna@example.it", ""},
		{11, "anna@example.it", ""},
	}
	for _, s := range seeds {
		f.Add(s.route, s.param, []byte(s.body))
	}
	s := mustStore(f)
	subs, err := NewSubscriptions(s, noop{}, SubscriptionsConfig{PublicURL: "https://platform.example", From: "news@platform.example", Secret: testSecret},
		slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	api := &API{Store: s, Layout: mustLayout(f), Transport: noop{}, Worker: WorkerConfig{PublicURL: "https://platform.example", Secret: testSecret},
		Token: "tok", Log: slog.New(slog.DiscardHandler), Subscriptions: subs, Inbound: &Inbound{Store: s, Secret: testSecret, HardBounces: 3}}
	mux := http.NewServeMux()
	api.Register(mux)
	n := 0
	f.Fuzz(func(t *testing.T, route uint8, param string, body []byte) {
		if n%200 == 0 {
			resetMailer(t, s)
		}
		n++
		r := apiRoutes[int(route)%len(apiRoutes)]
		path := strings.Replace(r.path, "{p}", url.PathEscape(param), 1)
		if strings.Contains(r.path, "?") {
			path = strings.Replace(r.path, "{p}", url.QueryEscape(param), 1)
		}
		req := httptest.NewRequest(r.method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("%s %s answered %d %s", r.method, path, rec.Code, rec.Body)
		}
		checkSubscribers(t, s)
	})
}

// FuzzPages posts arbitrary forms to the public pages: /subscribe, and the confirmation, unsubscribe, preferences
// and data export pages of valid links, with the CSRF cookie whose token the seeds carry. The pages must not
// crash, and they answer a bad form with a page saying what is wrong, not a 5xx.
func FuzzPages(f *testing.F) {
	const csrf = "00112233445566778899aabbccddeeff"
	for _, seed := range []struct {
		route uint8
		form  string
	}{
		{0, "csrf=" + csrf + "&email=jo%40example.de&name=Jo&company=Weber+GmbH&consent=yes&list=news&language=de"},
		{0, "csrf=" + csrf + "&email=not+an+address&consent=yes"},
		{1, "csrf=" + csrf},
		{2, "List-Unsubscribe=One-Click"},
		{2, "csrf=" + csrf + "&lang=fr"},
		{3, "csrf=" + csrf + "&list=news&list=other&language=es"},
		{4, "csrf=" + csrf},
	} {
		f.Add(seed.route, []byte(seed.form))
	}
	s := mustStore(f)
	subs, err := NewSubscriptions(s, noop{}, SubscriptionsConfig{PublicURL: "https://platform.example", From: "news@platform.example", Secret: testSecret},
		slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	unsubscribe := UnsubscribeToken(testSecret, &Subscriber{ID: "anna234567", Email: "anna@example.it"})
	routes := []string{"/subscribe", "/confirm/" + subs.confirmToken("anna@example.it", []string{"news"}), "/unsubscribe/" + unsubscribe,
		"/preferences/" + unsubscribe, "/export/" + unsubscribe}
	handler := subs.Handler()
	n := 0
	f.Fuzz(func(t *testing.T, route uint8, form []byte) {
		if n%200 == 0 {
			resetMailer(t, s)
		}
		n++
		path := routes[int(route)%len(routes)]
		req := httptest.NewRequest("POST", path, bytes.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: publicCSRFCookie, Value: csrf})
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("POST %s answered %d %s", path, rec.Code, rec.Body)
		}
		checkSubscribers(t, s)
	})
}
