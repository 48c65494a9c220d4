package faq

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Limits on entry text. An answer must fit a chat message comfortably; a question is one line.
const (
	MaxAnswer    = 1200 // characters
	MaxQuestion  = 300  // characters: long enough for a question told with its context
	MinPhrasings = 8    // phrasings of the question in every language
	minHandoff   = 2    // phrasings of a request for a person in every language
	// ReviewAge is how old a reviewed date may be before `faq check` asks for the entry to be checked again.
	ReviewAge = 365 * 24 * time.Hour
)

// Problem is one thing wrong (or, for a Note, left to do) in a knowledge base file.
type Problem struct {
	File string
	Line int
	Msg  string
	Note bool // not an error: something the platform owner still has to fill in
}

func (p Problem) String() string {
	if p.Note {
		return fmt.Sprintf("%s:%d: note: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

// Problems is the list returned by Load when a base is invalid.
type Problems []Problem

func (ps Problems) Error() string {
	var b strings.Builder
	n := 0
	for _, p := range ps {
		if p.Note {
			continue
		}
		if n > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
		n++
	}
	return b.String()
}

// Errors reports whether any problem is not a note.
func (ps Problems) Errors() bool {
	for _, p := range ps {
		if !p.Note {
			return true
		}
	}
	return false
}

var idPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Load reads and validates the knowledge base in fsys. It returns the base and the notes (open todos) when the base
// is valid, or a nil base and every problem found.
func Load(fsys fs.FS) (*Base, Problems) {
	l := &loader{fsys: fsys}
	b := &Base{byID: map[string]*Entry{}, Synonyms: map[string]string{}, Handoff: map[Lang][]string{}, Requests: map[Lang]RequestWords{}}
	l.topics(b)
	l.synonyms(b)
	l.handoff(b)
	l.stopWords(b)
	l.entries(b)
	l.links(b)
	sort.SliceStable(l.problems, func(i, j int) bool {
		a, c := l.problems[i], l.problems[j]
		if a.File != c.File {
			return a.File < c.File
		}
		return a.Line < c.Line
	})
	if l.problems.Errors() {
		return nil, l.problems
	}
	return b, l.problems
}

type loader struct {
	fsys     fs.FS
	problems Problems
	topicIDs map[string]bool
	lines    map[string]map[string]int // file -> related id -> line, for link checks
	qlines   map[string][]int          // file + " " + lang -> the line of each question, for small-talk checks
}

func (l *loader) errorf(file string, line int, format string, args ...any) {
	l.problems = append(l.problems, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// parse reads a YAML file into its document node. It reports a missing or malformed file and returns nil.
func (l *loader) parse(file string) *yaml.Node {
	data, err := fs.ReadFile(l.fsys, file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			l.errorf(file, 0, "file is missing")
		} else {
			l.errorf(file, 0, "cannot read: %v", err)
		}
		return nil
	}
	if !utf8.Valid(data) {
		l.errorf(file, lineOfInvalidUTF8(data), "not valid UTF-8")
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlErrorLine(err)
		line = min(line, bytes.Count(bytes.TrimRight(data, "\n"), []byte("\n"))+1)
		l.errorf(file, line, "malformed YAML: %s", msg)
		return nil
	}
	// A lone "---" is an empty document too: its null node lies past the last line.
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" && doc.Content[0].Value == "" {
		l.errorf(file, 1, "file is empty")
		return nil
	}
	return doc.Content[0]
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser, as opposed to its scanner.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
}

// yamlErrorLine pulls the line number out of a yaml.v3 error message.
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n := 0
		fmt.Sscanf(m[1], "%d", &n)
		if parserProblems[m[2]] {
			n++ // yaml.v3 numbers lines from 0 in its parser's errors (its scanner's are right)
		}
		return n, m[2]
	}
	return 1, strings.TrimPrefix(msg, "yaml: ")
}

func lineOfInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return bytes.Count(data[:i], []byte("\n")) + 1
		}
		i += size
	}
	return 1
}

// str returns a scalar's text, reporting anything else.
func (l *loader) str(file string, n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errorf(file, n.Line, "%s must be text", what)
		return "", false
	}
	return strings.TrimSpace(n.Value), true
}

func (l *loader) strs(file string, n *yaml.Node, what string) []string {
	if n.Kind != yaml.SequenceNode {
		l.errorf(file, n.Line, "%s must be a list", what)
		return nil
	}
	var out []string
	for _, item := range n.Content {
		if s, ok := l.str(file, item, what+" item"); ok {
			if s == "" {
				l.errorf(file, item.Line, "%s item is empty", what)
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// fields walks a mapping node, calling fn for each key, and reports keys that are not in known.
func (l *loader) fields(file string, n *yaml.Node, what string, known []string, fn func(key string, k, v *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		l.errorf(file, n.Line, "%s must be a mapping of fields", what)
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(known, k.Value) {
			l.errorf(file, k.Line, "unknown field %q in %s (expected one of %s)", k.Value, what, strings.Join(known, ", "))
			continue
		}
		if seen[k.Value] {
			l.errorf(file, k.Line, "field %q appears twice", k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k.Value, k, v)
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func langNames() []string {
	out := make([]string, len(Langs))
	for i, l := range Langs {
		out[i] = string(l)
	}
	return out
}

func (l *loader) topics(b *Base) {
	const file = "topics.yaml"
	l.topicIDs = map[string]bool{}
	root := l.parse(file)
	if root == nil {
		return
	}
	if root.Kind != yaml.SequenceNode {
		l.errorf(file, root.Line, "topics.yaml must be a list of topics")
		return
	}
	for _, item := range root.Content {
		t := Topic{Name: map[Lang]string{}}
		l.fields(file, item, "topic", append([]string{"id"}, langNames()...), func(key string, k, v *yaml.Node) {
			s, ok := l.str(file, v, key)
			if !ok {
				return
			}
			if key == "id" {
				t.ID = s
			} else {
				t.Name[Lang(key)] = s
			}
		})
		if item.Kind != yaml.MappingNode {
			continue
		}
		switch {
		case t.ID == "":
			l.errorf(file, item.Line, "topic has no id")
			continue
		case !idPattern.MatchString(t.ID):
			l.errorf(file, item.Line, "topic id %q must be lower-case words joined by hyphens", t.ID)
		case l.topicIDs[t.ID]:
			l.errorf(file, item.Line, "topic %q is listed twice", t.ID)
		}
		for _, lang := range Langs {
			if t.Name[lang] == "" {
				l.errorf(file, item.Line, "topic %q has no name in %s", t.ID, lang)
			}
		}
		l.topicIDs[t.ID] = true
		b.Topics = append(b.Topics, t)
	}
}

func (l *loader) synonyms(b *Base) {
	const file = "synonyms.yaml"
	root := l.parse(file)
	if root == nil {
		return
	}
	if root.Kind != yaml.SequenceNode {
		l.errorf(file, root.Line, "synonyms.yaml must be a list of groups, each a list of words")
		return
	}
	for _, group := range root.Content {
		words := l.strs(file, group, "synonym group")
		if group.Kind == yaml.SequenceNode && len(words) < 2 {
			l.errorf(file, group.Line, "a synonym group needs at least two words")
			continue
		}
		var canon string
		for i, w := range words {
			key := foldPhrase(w)
			if key == "" {
				l.errorf(file, group.Content[i].Line, "synonym %q has no letters or digits", w)
				continue
			}
			if canon == "" {
				canon = strings.ReplaceAll(key, " ", "")
			}
			if prev, dup := b.Synonyms[key]; dup && prev != canon {
				l.errorf(file, group.Content[i].Line, "%q is already a synonym of %q", w, prev)
				continue
			}
			b.Synonyms[key] = canon
		}
	}
}

func (l *loader) handoff(b *Base) {
	const file = "handoff.yaml"
	root := l.parse(file)
	if root == nil {
		return
	}
	l.fields(file, root, "handoff.yaml", langNames(), func(key string, k, v *yaml.Node) {
		lang := Lang(key)
		var rw RequestWords
		l.fields(file, v, key, []string{"phrasings", "people", "contact", "addressed", "asking", "details", "me"}, func(field string, k, v *yaml.Node) {
			list := l.strs(file, v, key+" "+field)
			switch field {
			case "phrasings":
				b.Handoff[lang] = list
			case "people":
				rw.People = list
			case "contact":
				rw.Contact = list
			case "addressed":
				rw.Addressed = list
			case "asking":
				rw.Asking = list
			case "details":
				rw.Details = list
			case "me":
				rw.Me = list
			}
		})
		b.Requests[lang] = rw
	})
	for _, lang := range Langs {
		if len(b.Handoff[lang]) < minHandoff {
			l.errorf(file, root.Line, "handoff.yaml needs at least %d phrasings in %s", minHandoff, lang)
		}
	}
}

func (l *loader) stopWords(b *Base) {
	const file = "stopwords.yaml"
	root := l.parse(file)
	if root == nil {
		return
	}
	l.fields(file, root, "stopwords.yaml", langNames(), func(key string, k, v *yaml.Node) {
		for i, w := range l.strs(file, v, key) {
			f := foldPhrase(w)
			if f == "" || strings.Contains(f, " ") {
				l.errorf(file, v.Content[i].Line, "stop word %q must be one word", w)
				continue
			}
			b.StopWords = append(b.StopWords, f)
		}
	})
}

func (l *loader) entries(b *Base) {
	names, err := fs.Glob(l.fsys, "entries/*")
	if err != nil {
		l.errorf("entries", 0, "cannot list: %v", err)
		return
	}
	l.lines = map[string]map[string]int{}
	l.qlines = map[string][]int{}
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			if !strings.HasPrefix(path.Base(name), ".") {
				l.errorf(name, 0, "not an entry: entry files end in .yaml")
			}
			continue
		}
		if e := l.entry(name); e != nil {
			b.Entries = append(b.Entries, e)
			b.byID[e.ID] = e
		}
	}
	if len(b.Entries) == 0 && len(l.problems) == 0 {
		l.errorf("entries", 0, "the knowledge base has no entries")
	}
	sort.Slice(b.Entries, func(i, j int) bool { return b.Entries[i].ID < b.Entries[j].ID })
}

var entryFields = append([]string{"kind", "topic", "reviewed", "sources", "related", "todo"}, langNames()...)

func (l *loader) entry(file string) *Entry {
	id := strings.TrimSuffix(path.Base(file), ".yaml")
	if !idPattern.MatchString(id) {
		l.errorf(file, 0, "file name %q is not a valid entry id: use lower-case words joined by hyphens", id)
		return nil
	}
	root := l.parse(file)
	if root == nil {
		return nil
	}
	e := &Entry{ID: id, Kind: KindAnswer, File: file, Text: map[Lang]Text{}}
	before := len(l.problems)
	related := map[string]int{}
	topicLine := 0
	for i := 0; root.Kind == yaml.MappingNode && i+1 < len(root.Content); i += 2 { // the texts depend on the kind
		if root.Content[i].Value == "kind" {
			e.Kind = Kind(root.Content[i+1].Value)
		}
	}
	ok := l.fields(file, root, "entry", entryFields, func(key string, k, v *yaml.Node) {
		switch key {
		case "kind":
			if s, ok := l.str(file, v, key); ok {
				if !slices.Contains(Kinds, Kind(s)) {
					l.errorf(file, v.Line, "unknown kind %q (one of %s)", s, kindNames())
				}
				e.Kind = Kind(s)
			}
		case "topic":
			topicLine = k.Line
			if s, ok := l.str(file, v, key); ok {
				if !l.topicIDs[s] {
					l.errorf(file, v.Line, "unknown topic %q (topics are listed in topics.yaml)", s)
				}
				e.Topic = s
			}
		case "reviewed":
			if s, ok := l.str(file, v, key); ok {
				t, err := time.Parse(time.DateOnly, s)
				if err != nil {
					l.errorf(file, v.Line, "reviewed must be a date like 2026-11-27, not %q", s)
				}
				e.Reviewed, e.reviewedLine = t, v.Line
			}
		case "sources":
			e.Sources = l.strs(file, v, key)
			for i, s := range e.Sources {
				if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") {
					l.errorf(file, v.Content[i].Line, "source %q is not a web address", s)
				}
			}
		case "related":
			e.Related = l.strs(file, v, key)
			for i, r := range e.Related {
				related[r] = v.Content[i].Line
			}
		case "todo":
			if s, ok := l.str(file, v, key); ok && s != "" {
				e.Todo = s
				l.problems = append(l.problems, Problem{File: file, Line: k.Line, Msg: "to fill in: " + oneLine(s), Note: true})
			}
		default:
			e.Text[Lang(key)] = l.text(file, k, v, Lang(key), e.Kind)
		}
	})
	if !ok {
		return nil
	}
	switch {
	case e.Scoped() && e.Topic == "":
		l.errorf(file, root.Line, "entry has no topic")
	case !e.Scoped() && topicLine > 0:
		l.errorf(file, topicLine, "a %s entry has no topic: only answers are browsed by topic", e.Kind)
	}
	if e.Reviewed.IsZero() {
		l.errorf(file, root.Line, "entry has no reviewed date")
	}
	if len(e.Sources) == 0 && e.Scoped() {
		l.errorf(file, root.Line, "entry has no sources")
	}
	for _, lang := range Langs {
		if _, ok := e.Text[lang]; !ok {
			l.errorf(file, root.Line, "entry has no %s text", lang)
		}
	}
	l.lines[file] = related
	if l.problems[before:].Errors() {
		return nil
	}
	return e
}

func (l *loader) text(file string, k, v *yaml.Node, lang Lang, kind Kind) Text {
	var t Text
	l.fields(file, v, string(lang), []string{"questions", "answer", "when"}, func(key string, k, n *yaml.Node) {
		switch key {
		case "questions":
			t.Questions = l.strs(file, n, string(lang)+" questions")
			seen := map[string]bool{}
			for i, q := range t.Questions {
				l.qlines[file+" "+string(lang)] = append(l.qlines[file+" "+string(lang)], n.Content[i].Line)
				if c := utf8.RuneCountInString(q); c > MaxQuestion {
					l.errorf(file, n.Content[i].Line, "%s question is %d characters long (at most %d)", lang, c, MaxQuestion)
				}
				if key := foldPhrase(q); seen[key] {
					l.errorf(file, n.Content[i].Line, "%s question %q is listed twice", lang, q)
				} else {
					seen[key] = true
				}
			}
		case "when":
			if kind != KindOutOfScope {
				l.errorf(file, k.Line, "%s when: only out-of-scope entries decline questions by their words", lang)
				return
			}
			if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
				l.errorf(file, n.Line, "%s when must be a list of word lists", lang)
				return
			}
			for _, g := range n.Content {
				if words := l.strs(file, g, string(lang)+" when group"); len(words) > 0 {
					t.When = append(t.When, words)
				}
			}
		case "answer":
			if s, ok := l.str(file, n, string(lang)+" answer"); ok {
				t.Answer = s
				if c := utf8.RuneCountInString(s); c > MaxAnswer {
					l.errorf(file, n.Line, "%s answer is %d characters long (at most %d: keep answers chat-sized)", lang, c, MaxAnswer)
				}
			}
		}
	})
	if len(t.Questions) < MinPhrasings {
		l.errorf(file, k.Line, "%s has %d phrasings of the question (at least %d)", lang, len(t.Questions), MinPhrasings)
	}
	if t.Answer == "" && v.Kind == yaml.MappingNode {
		l.errorf(file, k.Line, "%s answer is empty", lang)
	}
	return t
}

// links checks that related entries exist, after every entry is loaded, and that no message is small talk of two
// kinds: "ciao" is hello in Italian and bye in German, and the matcher recognises small talk by its words alone.
func (l *loader) links(b *Base) {
	said := map[string]*Entry{}
	for _, e := range b.Entries {
		if e.Kind != KindSmallTalk && e.Kind != KindThanks {
			continue
		}
		for _, lang := range Langs {
			for i, q := range e.Text[lang].Questions {
				k := foldPhrase(q)
				if other := said[k]; other != nil && other != e {
					l.errorf(e.File, l.qlines[e.File+" "+string(lang)][i], "%s question %q is also small talk of %s: a message can mean only one", lang, q, other.ID)
				}
				said[k] = e
			}
		}
	}
	for _, e := range b.Entries {
		for _, r := range e.Related {
			line := l.lines[e.File][r]
			switch {
			case r == e.ID:
				l.errorf(e.File, line, "entry lists itself as related")
			case b.byID[r] == nil:
				l.errorf(e.File, line, "related entry %q does not exist", r)
			case !b.byID[r].Scoped():
				l.errorf(e.File, line, "related entry %q is a %s entry: only answers can be offered", r, b.byID[r].Kind)
			}
		}
	}
}

func kindNames() string {
	var names []string
	for _, k := range Kinds {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// Stale returns a note for every entry whose reviewed date is more than ReviewAge before now.
func (b *Base) Stale(now time.Time) Problems {
	var out Problems
	for _, e := range b.Entries {
		if now.Sub(e.Reviewed) > ReviewAge {
			out = append(out, Problem{File: e.File, Line: e.reviewedLine, Note: true,
				Msg: fmt.Sprintf("reviewed %s, more than 12 months ago: check the answer against its sources and update the date", e.Reviewed.Format(time.DateOnly))})
		}
	}
	return out
}

// FewestPhrasings returns the smallest number of phrasings any entry has in any language, with that entry and
// language (the first such in id and language order).
func (b *Base) FewestPhrasings() (n int, id string, lang Lang) {
	n = -1
	for _, e := range b.Entries {
		for _, l := range Langs {
			if c := len(e.Text[l].Questions); n < 0 || c < n {
				n, id, lang = c, e.ID, l
			}
		}
	}
	return n, id, lang
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
