// Package faq is the help desk's knowledge base and its matcher.
//
// A Base is loaded from a folder of YAML files (embedded in the binary, or a directory on disk given by
// CSRDESK_FAQ_DIR) and validated as a whole: one bad file rejects the whole base, and every problem is reported
// as file:line. A Matcher indexes a Base and decides, for a question in any of the five languages, whether to
// answer, suggest a few entries, or escalate to staff. Live keeps the last good Matcher serving while the files
// are edited.
package faq

import (
	"embed"
	"io/fs"
	"strings"
	"time"
)

//go:embed kb
var embedded embed.FS

// Embedded returns the knowledge base shipped in the binary.
func Embedded() fs.FS {
	sub, err := fs.Sub(embedded, "kb")
	if err != nil {
		panic(err) // the path is a constant: this cannot fail at run time
	}
	return sub
}

// Lang is a language the help desk speaks, as an ISO 639-1 code.
type Lang string

// Langs are the help desk's languages, in the order answers are written.
var Langs = []Lang{"en", "de", "it", "fr", "es"}

// Name is the language's name in itself, for a choice of languages.
func (l Lang) Name() string {
	return map[Lang]string{"en": "English", "de": "Deutsch", "it": "Italiano", "fr": "Français", "es": "Español"}[l]
}

// ParseLang returns the Lang for a code such as "de" or "de-AT", and false if it is not one of Langs.
func ParseLang(code string) (Lang, bool) {
	if len(code) == 2 || (len(code) > 2 && (code[2] == '-' || code[2] == '_')) {
		c := Lang(strings.ToLower(code[:2]))
		for _, l := range Langs {
			if l == c {
				return l, true
			}
		}
	}
	return "", false
}

// Kind is what an entry is for. Only answers are browsed by topic, offered as suggestions and asked about
// ("did this help?"); the other kinds are replies to messages the help desk does not answer.
type Kind string

const (
	KindAnswer     Kind = "answer"       // a question of the help desk's scope and its answer
	KindOutOfScope Kind = "out-of-scope" // a kind of question the help desk declines: says what it covers and where to go
	KindSmallTalk  Kind = "small-talk"   // greetings, goodbyes, frustration: a short friendly reply
	KindThanks     Kind = "thanks"       // small talk that also says the last answer helped
)

// Kinds are the entry kinds, as written in an entry's kind field.
var Kinds = []Kind{KindAnswer, KindOutOfScope, KindSmallTalk, KindThanks}

// Entry is one question of the knowledge base with its answer in every language.
type Entry struct {
	ID       string
	Kind     Kind
	Topic    string // empty for the kinds other than KindAnswer
	Reviewed time.Time
	Sources  []string
	Related  []string
	// Todo says what the platform owner still has to fill in; empty when the entry is complete.
	Todo string
	Text map[Lang]Text
	// File is the entry's path inside the knowledge base folder.
	File string
	// reviewedLine is the line of the reviewed date in File, for notes about it.
	reviewedLine int
}

// Scoped reports whether the entry answers a question of the help desk's scope (KindAnswer).
func (e *Entry) Scoped() bool { return e.Kind == KindAnswer }

// Text is an entry in one language.
type Text struct {
	Questions []string
	Answer    string
	// When, for an out-of-scope entry, are groups of words that make a question this entry's whatever topic words
	// it has: one word of every group ("recommend" and "consultant" decline "which consultant do you recommend for
	// ISO 14001?"). Words are compared like the questions: case, accents and word endings aside.
	When [][]string
}

// In returns the entry's text in lang, or in English when lang is missing.
func (e *Entry) In(lang Lang) Text {
	if t, ok := e.Text[lang]; ok {
		return t
	}
	return e.Text["en"]
}

// Topic groups entries for browsing.
type Topic struct {
	ID   string
	Name map[Lang]string
}

// Base is a validated knowledge base.
type Base struct {
	Entries []*Entry // sorted by id
	Topics  []Topic  // in the order of topics.yaml
	// Synonyms maps a word or phrase (lower case, accents folded) to the term it stands for.
	Synonyms map[string]string
	// Handoff holds, per language, the ways people ask for a person.
	Handoff map[Lang][]string
	// Requests holds, per language, the words of a request for a person in other words than the phrasings.
	Requests map[Lang]RequestWords
	// StopWords are words the matcher ignores besides the standard lists (lower case, accents folded).
	StopWords []string
	byID      map[string]*Entry
}

// Entry returns the entry with the given id, or nil.
func (b *Base) Entry(id string) *Entry { return b.byID[id] }

// TopicEntries returns the entries of a topic, sorted by id.
func (b *Base) TopicEntries(topic string) []*Entry {
	var out []*Entry
	for _, e := range b.Entries {
		if e.Topic == topic {
			out = append(out, e)
		}
	}
	return out
}

// RequestWords are the words that make a question a request for a person: it names someone who could help (People)
// and a way of getting in touch (Contact), with a word pointing at the platform or the person asking (Addressed) or
// the words of a request (Asking). A question that names contact details (Details: "address", "number") asks
// where to write rather than to be contacted, unless it names the person asking as the one to reach (Me: "call me").
type RequestWords struct {
	People, Contact, Addressed, Asking, Details, Me []string
}
