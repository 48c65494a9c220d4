package faq

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

// FuzzEntry loads the test knowledge base with arbitrary bytes as one of its entry files. Whatever the file
// holds, loading must not crash, and every problem must say where it is: a file of the base and a line within it.
func FuzzEntry(f *testing.F) {
	valid := testEntry("eu-law", "join", "csrd", "the reporting directive", "sustainability reporting", "the omnibus")
	f.Add([]byte(valid))
	f.Add([]byte(strings.Replace(valid, "related:", "todo: Check the omnibus dates.\nrelated:", 1)))
	f.Add([]byte("topic: eu-law\nen:\n  questions: [a, b\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("topic: eu-law\nreviewed: \xff\xfe\n"))
	f.Add([]byte("topic: &t eu-law\nreviewed: *t\nsources: !!map {a: b}\nen: {questions: [~, '', x], answer: [1]}\n"))
	shipped, err := fs.ReadFile(Embedded(), "entries/csrd-scope.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		kb := testKB()
		delete(kb, "entries/README.txt.md")
		kb["entries/csrd.yaml"] = &fstest.MapFile{Data: data}
		b, problems := Load(kb)
		if (b == nil) != problems.Errors() {
			t.Fatalf("base %v with problems %v", b != nil, problems)
		}
		if b != nil && b.Entry("csrd") == nil {
			t.Errorf("a valid base without the entry: %v", problems)
		}
		for _, p := range problems {
			file, ok := kb[p.File]
			if !ok {
				t.Errorf("problem %q names no file of the base", p)
				continue
			}
			lines := yamlLines(file.Data)
			if p.Line < 1 || p.Line > lines {
				t.Errorf("problem %q is not on a line of %s (1 to %d)", p, p.File, lines)
			}
			if strings.TrimSpace(p.Msg) == "" {
				t.Errorf("problem %q says nothing", p)
			}
		}
	})
}

// yamlLines counts the lines of a YAML file as YAML does (and editors show them): a line ends at a line feed,
// a carriage return, both, or a Unicode NEL, LS or PS.
func yamlLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	return 1 + strings.Count(s, "\n") + strings.Count(s, "\r") + strings.Count(s, "\u0085") + strings.Count(s, "\u2028") + strings.Count(s, "\u2029")
}
