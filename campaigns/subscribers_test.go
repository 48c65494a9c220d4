package campaigns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb/rdbtest"
)

var redisSrv *rdbtest.Server

func TestMain(m *testing.M) { os.Exit(rdbtest.Main(m, &redisSrv)) }

func mustStore(t testing.TB, lists ...string) *Store {
	t.Helper()
	s := NewStore(redisSrv.Client(t))
	for _, l := range lists {
		if err := s.CreateList(context.Background(), List{Name: l}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{
		"  Anna.Rossi@Example.IT ": "anna.rossi@example.it",
		"jo+news@sub.example.com":  "jo+news@sub.example.com",
	} {
		if got, err := NormalizeEmail(in); err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "anna", "anna@", "@example.com", "anna@localhost", "Anna <anna@example.com>", "a@b..com", "a b@example.com", strings.Repeat("a", 250) + "@example.com"} {
		if got, err := NormalizeEmail(bad); err == nil {
			t.Errorf("NormalizeEmail(%q) = %q, want an error", bad, got)
		}
	}
}

func TestLists(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "events", "news")
	if err := s.CreateList(ctx, List{Name: "events"}); !errors.Is(err, ErrExists) {
		t.Errorf("creating a list twice: %v", err)
	}
	if err := s.CreateList(ctx, List{Name: "Bad Name!"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
	lists, err := s.Lists(ctx)
	if err != nil || len(lists) != 2 || lists[0].Name != "events" || lists[1].Members != 0 {
		t.Errorf("Lists = %+v, %v", lists, err)
	}
}

const importCSV = "\uFEFFEmail,Name,Company,Country,Language,sector,city\r\n" +
	"anna.rossi@example.it,Anna Rossi,\"Rossi, Meccanica SpA\",it,IT,machine tools,Brescia\r\n" +
	"not-an-address,Bad Row,,,,,\r\n" +
	"JO@EXAMPLE.DE,Jo Weber,Weber GmbH,DE,de,,\r\n" +
	"jo@example.de,Jo Again,,,,,\r\n" +
	"\r\n" +
	"too,few,fields\r\n" +
	"marc@example.fr,Marc \xe9t\xe9,,FR,fr,,\r\n" +
	"lea@example.es,Lea,,Spain,pt,suppliers,\r\n" +
	"\"unclosed@example.com,x\r\n"

func TestImport(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "events")
	read := 0
	rep, err := s.Import(ctx, strings.NewReader(importCSV), ImportOptions{List: "events", Confirmed: true, Progress: func(n int) { read += n }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added != 3 || rep.Updated != 0 {
		t.Errorf("added %d, updated %d; want 3, 0", rep.Added, rep.Updated)
	}
	wantProblems := []string{
		`line 3: "not-an-address" is not an email address`,
		"line 5: jo@example.de already on line 4",
		"line 7: 3 fields, the header has 7",
		"line 8: not valid UTF-8 (save the file as UTF-8)",
		`line 10: field 1 opens a quote (") that is not closed by the end of the file`,
	}
	if diff := cmp.Diff(wantProblems, rep.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	wantWarnings := []string{
		`line 9: country "Spain" is not a two-letter code; kept as written`,
		`line 9: language "pt" is not one of en, de, it, fr, es; left empty (mails go out in English)`,
	}
	if diff := cmp.Diff(wantWarnings, rep.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if read != len(importCSV)-3 { // the BOM is not counted
		t.Errorf("progress counted %d bytes of %d", read, len(importCSV)-3)
	}
	anna, err := s.Subscriber(ctx, "Anna.Rossi@example.it")
	if err != nil {
		t.Fatal(err)
	}
	if len(anna.ID) != 10 {
		t.Errorf("subscriber id %q, want 10 characters", anna.ID)
	}
	want := &Subscriber{ID: anna.ID, Email: "anna.rossi@example.it", Name: "Anna Rossi", Company: "Rossi, Meccanica SpA", Country: "IT", Language: "it",
		Status: Active, Attrs: map[string]string{"sector": "machine tools", "city": "Brescia"}, Created: anna.Created}
	if diff := cmp.Diff(want, anna); diff != "" {
		t.Errorf("subscriber (-want +got):\n%s", diff)
	}
}

func TestReimportKeepsStatus(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "events", "news")
	s.Import(ctx, strings.NewReader("email,name\njo@example.de,Jo\n"), ImportOptions{List: "events", Confirmed: true})
	if err := s.SetStatus(ctx, "jo@example.de", Unsubscribed); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Import(ctx, strings.NewReader("email,name,company\nJo@Example.de,Jo Weber,Weber GmbH\n"), ImportOptions{List: "news", Confirmed: true})
	if err != nil || rep.Updated != 1 || rep.Added != 0 {
		t.Fatalf("re-import: %+v %v", rep, err)
	}
	jo, _ := s.Subscriber(ctx, "jo@example.de")
	if jo.Status != Unsubscribed || jo.Company != "Weber GmbH" {
		t.Errorf("after re-import: %+v; an unsubscribed address must stay unsubscribed", jo)
	}
	lists, _ := s.Lists(ctx)
	if lists[0].Members != 1 || lists[1].Members != 1 {
		t.Errorf("members: %+v", lists)
	}
}

func TestImportErrors(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "events")
	for body, want := range map[string]string{
		"":                    "line 1: cannot read the header row",
		"name,company\nx,y\n": "the header has no email column",
		"email,name,email\n":  `column "email" appears twice`,
		"email,,name\n":       "column 2 has no name",
	} {
		if _, err := s.Import(ctx, strings.NewReader(body), ImportOptions{List: "events", Confirmed: true}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Import(%q): %v, want %q", body, err, want)
		}
	}
	if _, err := s.Import(ctx, strings.NewReader("email\na@example.com\n"), ImportOptions{List: "nope", Confirmed: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("import into a missing list: %v", err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "events", "copy")
	var b strings.Builder
	b.WriteString("email,name,company,country,language,role,seats\n")
	for i := range 1200 { // more than one page and one import batch
		fmt.Fprintf(&b, "p%04d@example.com,Person %d,\"Firm, %d\",de,de,buyer,%d\n", i, i, i, i%3)
	}
	if rep, err := s.Import(ctx, strings.NewReader(b.String()), ImportOptions{List: "events", Confirmed: true}); err != nil || rep.Added != 1200 {
		t.Fatalf("import: %+v %v", rep, err)
	}
	var out bytes.Buffer
	if err := s.Export(ctx, "events", &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1201 || lines[0] != "email,name,company,country,language,role,status,seats" || lines[1] != `p0000@example.com,Person 0,"Firm, 0",DE,de,buyer,active,0` {
		t.Fatalf("export: %d lines, first %q, %q", len(lines), lines[0], lines[1])
	}
	// What Export writes, Import reads back.
	rep, err := s.Import(ctx, &out, ImportOptions{List: "copy", Confirmed: true})
	if err != nil || rep.Updated != 1200 || len(rep.Problems) != 0 {
		t.Errorf("re-import of the export: %+v %v", rep, err)
	}
}

// A subscriber stored before subscribers had ids gets one when imported again, so that its bounces can be told
// apart (see VERP).
func TestReimportGivesAnID(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "all")
	s.rdb.HSet(ctx, subKey("old@example.com"), "email", "old@example.com", "status", Active, "created", "2026-01-01T00:00:00Z")
	if _, err := s.Import(ctx, strings.NewReader("email,name\nold@example.com,Old\n"), ImportOptions{List: "all"}); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscriber(ctx, "old@example.com")
	if err != nil || sub.ID == "" || sub.Status != Active || sub.Name != "Old" {
		t.Fatalf("after import: %+v %v", sub, err)
	}
	if email, _ := s.rdb.HGet(ctx, idsKey, sub.ID).Result(); email != "old@example.com" {
		t.Errorf("id %s names %q", sub.ID, email)
	}
}

// people returns a CSV of n valid rows after its header, one a line: the row of person i is on line i+2.
func people(n int) string {
	var b strings.Builder
	b.WriteString("email,name,company,country,language,sector\n")
	for i := range n {
		fmt.Fprintf(&b, "p%06d@example.com,Person %d,Firm %d,de,de,machine tools\n", i, i, i%100)
	}
	return b.String()
}

// One unbalanced quote costs its own line only: encoding/csv read on to the end of the file (or the next quote)
// and reported where it gave up; the report names the line the quote is on, and every other row is imported.
func TestImportUnbalancedQuote(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, broken string
		want         string
	}{
		{"never closed", `"broken@example.com,Broken,,,,`, `line 4: field 1 opens a quote (") that is not closed within 64 KiB; only line 4 is skipped, the lines after it are read as rows of their own`},
		// The next quote in the file, 600 lines on, closes it wrongly: still line 4 only.
		{"closed far on", `"broken@example.com,Broken,,,,`, `line 4: field 1 opens a quote (") that is not closed properly (the next ", on line 603, is followed by 'q'); only line 4 is skipped, the lines after it are read as rows of their own`},
		{"bare quote", `broken@example.com,Bro"ken,,,,`, `line 4: field 2 has a " inside it (quote the whole field and double the " inside: "say ""hi""")`},
		{"closed wrongly", `broken@example.com,"Broken"x,,,,`, `line 4: field 2: the " that closes it is followed by 'x', not a comma or the end of the line (double a " inside a quoted field: "say ""hi""")`},
		{"closed wrongly by é", `broken@example.com,"Broken"é,,,,`, `line 4: field 2: the " that closes it is followed by 'é', not a comma or the end of the line (double a " inside a quoted field: "say ""hi""")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustStore(t, "events")
			rows := strings.SplitAfter(people(5000), "\n")
			file := strings.Join(rows[:3], "") + tc.broken + "\n" + strings.Join(rows[3:], "")
			if tc.name == "closed far on" {
				file = strings.Replace(file, "p000600@example.com", `"quoted"p000600@example.com`, 1)
			}
			rep, err := s.Import(ctx, strings.NewReader(file), ImportOptions{List: "events", Confirmed: true})
			if err != nil {
				t.Fatal(err)
			}
			wantProblems := []string{tc.want}
			wantAdded := 5000
			if tc.name == "closed far on" {
				wantProblems = append(wantProblems, `line 603: field 1: the " that closes it is followed by 'p', not a comma or the end of the line (double a " inside a quoted field: "say ""hi""")`)
				wantAdded--
			}
			if diff := cmp.Diff(wantProblems, rep.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if rep.Added != wantAdded || rep.NotImported != len(wantProblems) || rep.Lines != 5002 {
				t.Errorf("report %+v; want %d added, %d not imported, 5002 lines", rep, wantAdded, len(wantProblems))
			}
			if n, _ := s.rdb.ZCard(ctx, membersKey("events")).Result(); n != int64(wantAdded) {
				t.Errorf("%d members, want %d", n, wantAdded)
			}
			if _, err := s.Subscriber(ctx, "p004999@example.com"); err != nil {
				t.Errorf("the last row: %v", err)
			}
		})
	}
}

// A quoted field may still run over several lines; a problem in such a row names all of its lines.
func TestImportMultilineField(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "events")
	file := "email,name,company\n" +
		"jo@example.de,Jo,\"Weber\r\nGmbH\"\n" +
		"bad,\"two\nlines\",x\n" +
		"lea@example.es,Lea,\n"
	rep, err := s.Import(ctx, strings.NewReader(file), ImportOptions{List: "events", Confirmed: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{`line 4: "bad" is not an email address (the row spans lines 4-5)`}, rep.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if jo, err := s.Subscriber(ctx, "jo@example.de"); err != nil || jo.Company != "Weber\nGmbH" || rep.Added != 2 {
		t.Errorf("jo: %+v %v; report %+v", jo, err, rep)
	}
}

// Every field has a limit; a row over one is reported on its line and nothing of it is stored.
func TestImportFieldLimits(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "events")
	long := func(n int) string { return strings.Repeat("é", n) } // 2 bytes a character: limits count characters
	file := "email,name,company,role,country,language,notes\n" +
		"ok@example.com," + long(200) + "," + long(200) + "," + long(200) + ",," + ",\"" + long(1000) + "\"\n" + // every field at its limit
		"name@example.com," + long(201) + ",,,,,\n" +
		"company@example.com,," + long(20000) + ",,,,\n" +
		strings.Repeat("a", 243) + "@example.com,,,,,,\n" + // 255 bytes
		"role@example.com,,," + long(201) + ",,,\n" +
		"country@example.com,,,," + long(65) + ",,\n" +
		"language@example.com,,,,," + long(36) + ",\n" +
		"notes@example.com,,,,,," + long(1001) + "\n" +
		"huge@example.com,\"" + strings.Repeat("x", 100<<10) + "\",,,,,\n" + // a 100 KiB line: not even read
		"last@example.com,Last,,,,,\n"
	rep, err := s.Import(ctx, strings.NewReader(file), ImportOptions{List: "events", Confirmed: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"line 3: name is 201 characters long; the most is 200",
		"line 4: company is 20000 characters long; the most is 200",
		"line 5: email is 255 bytes long; an address has at most 254 (RFC 5321)",
		"line 6: role is 201 characters long; the most is 200",
		"line 7: country is 65 characters long; the most is 64",
		"line 8: language is 36 characters long; the most is 35",
		"line 9: notes is 1001 characters long; the most for an attribute is 1000",
		"line 10: longer than 64 KiB; not read",
	}
	if diff := cmp.Diff(want, rep.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if rep.Added != 2 || rep.NotImported != 8 {
		t.Errorf("report: %+v", rep)
	}
	for _, e := range []string{"name@example.com", "company@example.com", "role@example.com", "country@example.com", "language@example.com", "notes@example.com", "huge@example.com"} {
		if _, err := s.Subscriber(ctx, e); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s is stored (%v), though its row was not imported", e, err)
		}
	}
	if ok, err := s.Subscriber(ctx, "ok@example.com"); err != nil || ok.Name != long(200) || ok.Attrs["notes"] != long(1000) {
		t.Errorf("the row at the limits: %v", err)
	}
	// Attributes have a limit together too, and so has the header.
	many := "email"
	row := "many@example.com"
	for i := range 20 {
		many += fmt.Sprintf(",a%d", i)
		row += "," + strings.Repeat("x", 1000)
	}
	rep, err = s.Import(ctx, strings.NewReader(many+"\n"+row+"\n"), ImportOptions{List: "events"})
	if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "line 2: the attributes (columns a0, a1,") || !strings.Contains(rep.Problems[0], "the most is 16384") {
		t.Errorf("attributes over their total: %+v %v", rep, err)
	}
	wide := "email" + strings.Repeat(",x", 64)
	if _, err := s.Import(ctx, strings.NewReader(wide+"\n"), ImportOptions{List: "events"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "line 1: the header has 65 columns; the most is 64") {
		t.Errorf("a header of 65 columns: %v", err)
	}
}

// An import that stops midway, here because Redis refuses writes (maxmemory reached), says at which line and how
// many rows it stored; run again, it finishes: no one is added twice, no consent recorded twice.
func TestImportStopsMidway(t *testing.T) {
	ctx := context.Background()
	srv := rdbtest.Own(t)
	rc := srv.Client(t)
	s := NewStore(rc)
	if err := s.CreateList(ctx, List{Name: "events"}); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	file := people(n)
	// After the third batch Redis has no memory left for writes.
	rep, err := s.Import(ctx, strings.NewReader(file), ImportOptions{List: "events", Confirmed: true, Stored: func(rows, line int) {
		if rows == 3*importBatch {
			rc.ConfigSet(ctx, "maxmemory", "1")
		}
	}})
	var stopped *ImportStopped
	if !errors.As(err, &stopped) || stopped.Line != 3*importBatch+2 || stopped.Stored != 3*importBatch || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("import into a full Redis: %v", err)
	}
	if !strings.Contains(err.Error(), "import stopped at line 1502 with 1500 rows stored before it") {
		t.Errorf("the error does not say how far it got: %v", err)
	}
	if rep == nil || rep.Added != 3*importBatch || rep.StoppedAt != 1502 {
		t.Errorf("report: %+v", rep)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	stored := func() (members, all, ids int64) {
		members, _ = rc.ZCard(ctx, membersKey("events")).Result()
		all, _ = rc.ZCard(ctx, subsKey).Result()
		ids, _ = rc.HLen(ctx, idsKey).Result()
		return
	}
	if m, a, i := stored(); m != 1500 || a != 1500 || i != 1500 {
		t.Errorf("after the failure: %d members, %d subscribers, %d ids; want 1500 each (the batches written, whole)", m, a, i)
	}
	rep, err = s.Import(ctx, strings.NewReader(file), ImportOptions{List: "events", Confirmed: true})
	if err != nil || rep.Added != n-1500 || rep.Unchanged != 1500 || rep.Updated != 0 {
		t.Fatalf("the re-run: %+v %v; want %d added, 1500 unchanged", rep, err, n-1500)
	}
	if m, a, i := stored(); m != n || a != n || i != n {
		t.Errorf("after the re-run: %d members, %d subscribers, %d ids; want %d each", m, a, i, n)
	}
	pipe := rc.Pipeline()
	lens := make([]*redis.IntCmd, n)
	for i := range n {
		lens[i] = pipe.LLen(ctx, consentKey(fmt.Sprintf("p%06d@example.com", i)))
	}
	pipe.Exec(ctx)
	for i, c := range lens {
		if c.Val() != 1 {
			t.Fatalf("p%06d has %d consent records, want 1", i, c.Val())
		}
	}
}

// BenchmarkImport imports 10,000 new subscribers an operation, into an empty database: go test -run X -bench
// Import ./campaigns/ reports rows/s.
func BenchmarkImport(b *testing.B) {
	ctx := context.Background()
	s := mustStore(b)
	const n = 10000
	file := people(n)
	for b.Loop() {
		b.StopTimer()
		if err := s.rdb.FlushDB(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateList(ctx, List{Name: "events"}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if rep, err := s.Import(ctx, strings.NewReader(file), ImportOptions{List: "events", Confirmed: true}); err != nil || rep.Added != n {
			b.Fatalf("import: %+v %v", rep, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// failingReader gives r's bytes until n are read, then err: an upload cut off midway.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// An input that breaks off midway stops the import as Redis failing does: the rows of the batches before are
// stored, the error says at which line, and that reading failed.
func TestImportReadFails(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "events")
	file := people(2000)
	cut := strings.Index(file, "p001200@") // in the third batch
	broken := errors.New("connection reset")
	rep, err := s.Import(ctx, &failingReader{strings.NewReader(file), cut, broken}, ImportOptions{List: "events", Confirmed: true})
	var stopped *ImportStopped
	if !errors.As(err, &stopped) || !errors.Is(err, broken) || !stopped.Read || stopped.Line != 1002 || stopped.Stored != 1000 {
		t.Fatalf("import of a cut-off input: %+v, %v", stopped, err)
	}
	if n, _ := s.rdb.ZCard(ctx, membersKey("events")).Result(); n != 1000 || rep.Added != 1000 {
		t.Errorf("%d members, report %+v; want the first two batches", n, rep)
	}
}
