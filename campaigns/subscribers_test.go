package campaigns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

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
		`line 10: extraneous or missing " in quoted-field`,
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
