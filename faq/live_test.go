package faq

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLiveReloadKeepsLastGoodBase(t *testing.T) {
	dir := t.TempDir()
	kb := testKB()
	delete(kb, "entries/README.txt.md")
	delete(kb, "entries/.editor.swp")
	if err := os.CopyFS(dir, kb); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	live, err := Open(dir, Config{Answer: 0.5, Suggest: 0.2, Human: 0.5}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first := live.Matcher()

	// An invalid edit: the error names the file and line, the old base keeps serving.
	os.WriteFile(filepath.Join(dir, "entries", "join.yaml"), []byte("topic: platform\nen:\n  questions: [\n"), 0o644)
	if err := live.Reload(); err == nil {
		t.Fatal("Reload accepted an invalid base")
	}
	if live.Matcher() != first {
		t.Error("an invalid edit replaced the serving base")
	}
	if !strings.Contains(logs.String(), "entries/join.yaml:") {
		t.Errorf("log does not say where the problem is:\n%s", logs.String())
	}
	if r := live.Matcher().Match("membership fee", Hint{}); r.Entry == nil || r.Entry.ID != "join" {
		t.Errorf("after an invalid edit: %+v, want join answered from the last good base", r)
	}

	// A valid edit replaces it.
	os.Remove(filepath.Join(dir, "entries", "join.yaml"))
	os.WriteFile(filepath.Join(dir, "entries", "csrd.yaml"), []byte(testEntry("eu-law", "", "csrd", "the reporting directive", "sustainability reporting", "the omnibus")), 0o644)
	if err := live.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := len(live.Matcher().Base().Entries); got != 1 {
		t.Errorf("%d entries after removing one, want 1", got)
	}
}

func TestOpenInvalidBase(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "topics.yaml"), []byte("{"), 0o644)
	_, err := Open(dir, DefaultConfig(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "topics.yaml:1: malformed YAML") || !strings.Contains(err.Error(), "synonyms.yaml:0: file is missing") {
		t.Errorf("Open on an invalid base: %v", err)
	}
}
