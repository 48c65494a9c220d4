package faq

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testTopics = `- {id: eu-law, en: EU law, de: EU-Recht, it: Normativa UE, fr: Droit de l'UE, es: Normativa de la UE}
- {id: platform, en: The platform, de: Die Plattform, it: La piattaforma, fr: La plateforme, es: La plataforma}
`

const testSynonyms = `- [csr, rse, rsi, rsc, corporate social responsibility]
- [csrd, corporate sustainability reporting directive]
`

const testHandoff = `en:
  phrasings: [talk to a human, speak to a person, operator please, connect me with an agent]
  people: [adviser, someone]
  contact: [call, email]
  addressed: [you, me]
  asking: [please, could]
de: {phrasings: [mit einem Menschen sprechen, Mitarbeiter bitte]}
it: {phrasings: [parlare con una persona, passami un operatore]}
fr: {phrasings: [parler à un humain, un conseiller s'il vous plaît]}
es: {phrasings: [hablar con una persona, pásame con un operador]}
`

// testEntry returns a valid entry file; the questions are about topic words so that entries differ. Four words
// make the MinPhrasings phrasings per language.
func testEntry(topic, related string, words ...string) string {
	return "topic: " + topic + "\nreviewed: 2026-11-27\nsources:\n  - https://eur-lex.europa.eu/\nrelated: [" + related + "]\n" +
		testTexts(words...)
}

// testTexts returns the five languages of an entry, with two phrasings per word.
func testTexts(words ...string) string {
	var b strings.Builder
	for _, lang := range Langs {
		b.WriteString(string(lang) + ":\n  questions:\n")
		for _, w := range words {
			b.WriteString("    - what is " + w + " in " + string(lang) + "\n")
		}
		for _, w := range words {
			b.WriteString("    - " + w + " for " + string(lang) + "\n")
		}
		b.WriteString("  answer: |\n    " + words[0] + " explained in " + string(lang) + ".\n")
	}
	return b.String()
}

func testKB() fstest.MapFS {
	return fstest.MapFS{
		"topics.yaml":           {Data: []byte(testTopics)},
		"synonyms.yaml":         {Data: []byte(testSynonyms)},
		"handoff.yaml":          {Data: []byte(testHandoff)},
		"stopwords.yaml":        {Data: []byte("en: [actually, please]\nde: [bitte]\n")},
		"entries/csrd.yaml":     {Data: []byte(testEntry("eu-law", "join", "csrd", "the reporting directive", "sustainability reporting", "the omnibus"))},
		"entries/join.yaml":     {Data: []byte(testEntry("platform", "csrd", "joining", "membership fee", "registration", "the platform"))},
		"entries/.editor.swp":   {Data: []byte("ignored")},
		"entries/README.txt.md": nil,
	}
}

func TestLoadValid(t *testing.T) {
	kb := testKB()
	delete(kb, "entries/README.txt.md")
	b, problems := Load(kb)
	if b == nil {
		t.Fatalf("valid base rejected:\n%v", problems)
	}
	if len(problems) != 0 {
		t.Errorf("problems on a valid base: %v", problems)
	}
	if got := []string{b.Entries[0].ID, b.Entries[1].ID}; !cmp.Equal(got, []string{"csrd", "join"}) {
		t.Errorf("entries = %v", got)
	}
	e := b.Entry("csrd")
	if e.Topic != "eu-law" || e.Reviewed.Format("2006-01-02") != "2026-11-27" || len(e.Text) != 5 || e.Related[0] != "join" {
		t.Errorf("entry decoded wrongly: %+v", e)
	}
	if got := e.In("de").Questions[0]; got != "what is csrd in de" {
		t.Errorf("German question = %q", got)
	}
	if b.Synonyms["corporate social responsibility"] != "csr" || b.Synonyms["rse"] != "csr" {
		t.Errorf("synonyms = %v", b.Synonyms)
	}
	if len(b.Topics) != 2 || b.Topics[1].Name["fr"] != "La plateforme" {
		t.Errorf("topics = %+v", b.Topics)
	}
	if got := b.TopicEntries("platform"); len(got) != 1 || got[0].ID != "join" {
		t.Errorf("TopicEntries(platform) = %v", got)
	}
}

func TestLoadProblems(t *testing.T) {
	valid := testEntry("eu-law", "join", "csrd", "the reporting directive", "sustainability reporting", "the omnibus")
	tests := []struct {
		name  string
		file  string
		data  string
		wants []string // each must appear among the problems
	}{
		{"malformed yaml", "entries/csrd.yaml", "topic: eu-law\nen:\n  questions: [a, b\n", []string{"entries/csrd.yaml:3: malformed YAML"}},
		{"block mapping", "entries/csrd.yaml", "topic: eu-law\nen:\n  questions:\n    - a\n   - b\n", []string{"entries/csrd.yaml:3: malformed YAML"}},
		{"tab indentation", "entries/csrd.yaml", "topic: eu-law\nen:\n\tquestions: [a]\n", []string{"entries/csrd.yaml:3: malformed YAML"}},
		{"not utf-8", "entries/csrd.yaml", "topic: eu-law\nreviewed: \xff\xfe\n", []string{"entries/csrd.yaml:2: not valid UTF-8"}},
		{"binary", "entries/csrd.yaml", "\x00\x01\x02", []string{"entries/csrd.yaml:1:"}},
		{"empty file", "entries/csrd.yaml", "", []string{"entries/csrd.yaml:1: file is empty"}},
		{"unknown field", "entries/csrd.yaml", strings.Replace(valid, "topic:", "topik:", 1), []string{`entries/csrd.yaml:1: unknown field "topik"`, "entry has no topic"}},
		{"unknown topic", "entries/csrd.yaml", strings.Replace(valid, "topic: eu-law", "topic: law", 1), []string{`entries/csrd.yaml:1: unknown topic "law"`}},
		{"bad date", "entries/csrd.yaml", strings.Replace(valid, "2026-11-27", "27.11.2026", 1), []string{`entries/csrd.yaml:2: reviewed must be a date`}},
		{"missing language", "entries/csrd.yaml", valid[:strings.Index(valid, "\nes:\n")+1], []string{"entries/csrd.yaml:1: entry has no es text"}},
		{"too few questions", "entries/csrd.yaml", strings.Replace(valid, "    - what is the omnibus in en\n", "", 1), []string{fmt.Sprintf("en has %d phrasings of the question (at least %d)", 2*4-1, MinPhrasings)}},
		{"unknown kind", "entries/csrd.yaml", "kind: chat\n" + valid, []string{`entries/csrd.yaml:1: unknown kind "chat" (one of answer, out-of-scope, small-talk, thanks)`}},
		{"small talk with a topic", "entries/csrd.yaml", "kind: small-talk\n" + valid, []string{"entries/csrd.yaml:2: a small-talk entry has no topic"}},
		{"related small talk", "entries/csrd.yaml", "kind: thanks\nreviewed: 2026-11-27\nrelated: [csrd]\n" + testTexts("thanks", "thank you", "cheers", "great"), []string{`related entry "csrd" is a thanks entry: only answers can be offered`}},
		{"empty answer", "entries/csrd.yaml", strings.Replace(valid, "  answer: |\n    csrd explained in it.\n", "  answer: \"\"\n", 1), []string{"it answer is empty"}},
		{"huge answer", "entries/csrd.yaml", strings.Replace(valid, "csrd explained in fr.", strings.Repeat("word ", 300), 1), []string{"fr answer is 1499 characters long (at most 1200"}},
		{"broken related", "entries/csrd.yaml", strings.Replace(valid, "related: [join]", "related: [joining]", 1), []string{`entries/csrd.yaml:5: related entry "joining" does not exist`}},
		{"related to itself", "entries/csrd.yaml", strings.Replace(valid, "related: [join]", "related: [csrd]", 1), []string{"entries/csrd.yaml:5: entry lists itself as related"}},
		{"bad source", "entries/csrd.yaml", strings.Replace(valid, "https://eur-lex.europa.eu/", "eur-lex", 1), []string{`entries/csrd.yaml:4: source "eur-lex" is not a web address`}},
		{"answer without sources", "entries/csrd.yaml", strings.Replace(valid, "sources:\n  - https://eur-lex.europa.eu/\n", "", 1), []string{"entries/csrd.yaml:1: entry has no sources"}},
		{"duplicate question", "entries/csrd.yaml", strings.Replace(valid, "what is the omnibus in en", "What is CSRD in EN?", 1), []string{`en question "What is CSRD in EN?" is listed twice`}},
		{"bad id", "entries/CSRD 2.yaml", valid, []string{"entries/CSRD 2.yaml:0: file name"}},
		{"not yaml", "entries/notes.txt", "hello", []string{"entries/notes.txt:0: not an entry"}},
		{"list instead of mapping", "entries/csrd.yaml", "- a\n- b\n", []string{"entries/csrd.yaml:1: entry must be a mapping"}},
		{"topics missing", "topics.yaml", "", []string{"topics.yaml:1: file is empty"}},
		{"topic without a language", "topics.yaml", "- {id: eu-law, en: EU law}\n", []string{"topics.yaml:1: topic \"eu-law\" has no name in de"}},
		{"synonym group of one", "synonyms.yaml", "- [csr]\n", []string{"synonyms.yaml:1: a synonym group needs at least two words"}},
		{"synonym in two groups", "synonyms.yaml", "- [csr, rse]\n- [esg, rse]\n", []string{`synonyms.yaml:2: "rse" is already a synonym of "csr"`}},
		{"stop word of two words", "stopwords.yaml", "en: [actually, thank you]\n", []string{`stopwords.yaml:1: stop word "thank you" must be one word`}},
		{"handoff language missing", "handoff.yaml", "en: {phrasings: [talk to a human, operator]}\n", []string{"handoff.yaml:1: handoff.yaml needs at least 2 phrasings in de"}},
		{"handoff unknown list", "handoff.yaml", strings.Replace(testHandoff, "  people:", "  peeple:", 1), []string{`handoff.yaml:3: unknown field "peeple" in en`}},
		{"when on an answer", "entries/csrd.yaml", strings.Replace(valid, "  answer: |\n    csrd explained in it.", "  when: [[recommend], [consultant]]\n  answer: |\n    csrd explained in it.", 1), []string{"it when: only out-of-scope entries decline questions by their words"}},
		{"when not a list of lists", "entries/csrd.yaml", "kind: out-of-scope\n" + strings.Replace(valid, "  answer: |\n    csrd explained in it.", "  when: recommend\n  answer: |\n    csrd explained in it.", 1), []string{"it when must be a list of word lists"}},
		{"handoff old shape", "handoff.yaml", "en: [talk to a human, operator]\n", []string{"handoff.yaml:1: en must be a mapping of fields"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kb := testKB()
			delete(kb, "entries/README.txt.md")
			if strings.HasPrefix(tt.file, "entries/") && tt.file != "entries/csrd.yaml" && tt.name != "not yaml" {
				delete(kb, "entries/csrd.yaml")
			}
			kb[tt.file] = &fstest.MapFile{Data: []byte(tt.data)}
			b, problems := Load(kb)
			if b != nil {
				t.Fatalf("invalid base accepted")
			}
			got := problems.Error()
			for _, want := range tt.wants {
				if !strings.Contains(got, want) {
					t.Errorf("problems do not mention %q; got:\n%s", want, got)
				}
			}
		})
	}
}

func TestLoadTodoIsANote(t *testing.T) {
	kb := testKB()
	delete(kb, "entries/README.txt.md")
	data := strings.Replace(string(kb["entries/join.yaml"].Data), "related:", "todo: Fill in the membership fee.\nrelated:", 1)
	kb["entries/join.yaml"] = &fstest.MapFile{Data: []byte(data)}
	b, problems := Load(kb)
	if b == nil {
		t.Fatalf("a todo must not make the base invalid: %v", problems)
	}
	want := Problems{{File: "entries/join.yaml", Line: 5, Msg: "to fill in: Fill in the membership fee.", Note: true}}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	if b.Entry("join").Todo == "" {
		t.Error("entry lost its todo")
	}
}

// TestLoadKinds loads out-of-scope and small-talk entries: no topic and no sources needed, never browsed by topic.
func TestLoadKinds(t *testing.T) {
	kb := testKB()
	delete(kb, "entries/README.txt.md")
	kb["entries/smalltalk-thanks.yaml"] = &fstest.MapFile{Data: []byte("kind: thanks\nreviewed: 2025-06-30\n" + testTexts("thanks", "thank you", "cheers", "great"))}
	kb["entries/out-of-scope-prices.yaml"] = &fstest.MapFile{Data: []byte("kind: out-of-scope\nreviewed: 2026-11-27\nrelated: [join]\n" + testTexts("machine prices", "a lathe quote", "cost of a grinder", "price list"))}
	b, problems := Load(kb)
	if b == nil {
		t.Fatal(problems)
	}
	if k := b.Entry("smalltalk-thanks").Kind; k != KindThanks {
		t.Errorf("kind = %q", k)
	}
	if e := b.Entry("csrd"); e.Kind != KindAnswer || !e.Scoped() {
		t.Errorf("an entry without a kind is an answer: %q", e.Kind)
	}
	for _, tp := range b.Topics {
		for _, e := range b.TopicEntries(tp.ID) {
			if !e.Scoped() {
				t.Errorf("topic %s lists the %s entry %s", tp.ID, e.Kind, e.ID)
			}
		}
	}
	if n, id, lang := b.FewestPhrasings(); n != 8 || id != "csrd" || lang != "en" {
		t.Errorf("FewestPhrasings = %d %s %s, want 8 csrd en", n, id, lang)
	}
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	want := Problems{{File: "entries/smalltalk-thanks.yaml", Line: 2, Note: true,
		Msg: "reviewed 2025-06-30, more than 12 months ago: check the answer against its sources and update the date"}}
	if diff := cmp.Diff(want, b.Stale(now)); diff != "" {
		t.Errorf("stale notes (-want +got):\n%s", diff)
	}
	if got := b.Stale(now.AddDate(-1, 0, 0)); len(got) != 0 {
		t.Errorf("a year earlier nothing was stale: %v", got)
	}
}

func TestLoadSmallTalkOfTwoKinds(t *testing.T) {
	kb := testKB()
	delete(kb, "entries/README.txt.md")
	kb["entries/smalltalk-hello.yaml"] = &fstest.MapFile{Data: []byte("kind: small-talk\nreviewed: 2026-11-27\n" + testTexts("ciao", "hello", "hi", "hey"))}
	kb["entries/smalltalk-bye.yaml"] = &fstest.MapFile{Data: []byte("kind: small-talk\nreviewed: 2026-11-27\n" + strings.Replace(testTexts("bye", "goodbye", "see you", "later"), "    - bye for de\n", "    - Ciao for DE!\n", 1))}
	_, problems := Load(kb)
	want := `entries/smalltalk-hello.yaml:21: de question "ciao for de" is also small talk of smalltalk-bye: a message can mean only one`
	if !strings.Contains(problems.Error(), want) {
		t.Errorf("problems do not mention %q; got:\n%v", want, problems)
	}
}

func TestEmbeddedBaseIsValid(t *testing.T) {
	b, problems := Load(Embedded())
	if b == nil {
		t.Fatalf("the shipped knowledge base is invalid:\n%v", problems)
	}
	if len(b.Entries) < 80 {
		t.Errorf("%d entries, want at least 80", len(b.Entries))
	}
	topics := map[string]int{}
	for _, e := range b.Entries {
		topics[e.Topic]++
	}
	for _, tp := range b.Topics {
		if topics[tp.ID] == 0 {
			t.Errorf("topic %s has no entries", tp.ID)
		}
	}
}
