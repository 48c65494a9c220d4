package faq

import (
	"slices"
	"strings"
	"unicode"

	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/analysis/char/asciifolding"
	"github.com/blevesearch/bleve/v2/analysis/lang/de"
	"github.com/blevesearch/bleve/v2/analysis/lang/en"
	"github.com/blevesearch/bleve/v2/analysis/lang/es"
	"github.com/blevesearch/bleve/v2/analysis/lang/fr"
	"github.com/blevesearch/bleve/v2/analysis/lang/it"
	"github.com/blevesearch/bleve/v2/analysis/token/stop"
)

// MaxQuery is how much of a question the matcher reads, in bytes. Chat questions are far shorter; the cap keeps a
// pasted megabyte from costing more than a normal question.
const MaxQuery = 2000

// foldPhrase lower-cases s, folds accents to ASCII (people often type without them) and turns everything but
// letters and digits into single spaces.
func foldPhrase(s string) string {
	if len(s) > MaxQuery {
		s = s[:MaxQuery]
	}
	folded := asciifolding.New().Filter([]byte(s))
	var b strings.Builder
	b.Grow(len(folded))
	space := true
	for _, r := range string(folded) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
			space = false
		case !space:
			b.WriteByte(' ')
			space = true
		}
	}
	return strings.TrimSpace(b.String())
}

// analyzer turns text in one language into index terms: stop words dropped, words stemmed. The stop lists and
// stemmers are bleve's (Snowball); the stop words are accent-folded like the text.
type analyzer struct {
	stop    analysis.TokenMap
	filters []analysis.TokenFilter
}

func newAnalyzer(lang Lang, extraStop []string) *analyzer {
	var norm, stem analysis.TokenFilter
	switch lang {
	case "en":
		stem = en.NewEnglishStemmerFilter()
	case "de":
		// Umlauts typed as ae, oe, ue become plain vowels, as folded umlauts do; before the stop list, so that
		// "fuer" is dropped like "für".
		stem, norm = de.NewGermanStemmerFilter(), de.NewGermanNormalizeFilter()
	case "it":
		stem = it.NewItalianStemmerFilter()
	case "fr":
		stem = fr.NewFrenchStemmerFilter()
	case "es":
		stem = es.NewSpanishStemmerFilter()
	}
	// The stop words of all five languages: people mix languages, and the knowledge base quotes names and titles
	// in English.
	stopWords := analysis.NewTokenMap()
	add := func(f string) {
		if norm != nil {
			f = string(norm.Filter(analysis.TokenStream{{Term: []byte(f)}})[0].Term)
		}
		stopWords.AddToken(f)
	}
	for _, l := range Langs {
		for w := range standardStopWords(l) {
			add(w)
		}
	}
	for _, w := range extraStop {
		add(w)
	}
	a := &analyzer{stop: stopWords}
	if norm != nil {
		a.filters = append(a.filters, norm)
	}
	// Stop words again after stemming: "whats" becomes "what".
	a.filters = append(a.filters, stop.NewStopTokensFilter(stopWords), stem, stop.NewStopTokensFilter(stopWords))
	return a
}

// standardStopWords returns the Snowball stop list of a language from bleve, accent-folded.
func standardStopWords(lang Lang) map[string]bool {
	lists := map[Lang][]byte{"en": en.EnglishStopWords, "de": de.GermanStopWords, "it": it.ItalianStopWords, "fr": fr.FrenchStopWords, "es": es.SpanishStopWords}
	raw := analysis.NewTokenMap()
	if err := raw.LoadBytes(lists[lang]); err != nil {
		panic(err) // bleve's own lists: cannot fail
	}
	out := make(map[string]bool, len(raw))
	for w := range raw {
		if f := foldPhrase(w); f != "" && !strings.Contains(f, " ") {
			out[f] = true
		}
	}
	return out
}

// word is one word of a text: its folded surface form and its term (stem). Synonyms keep their canonical term.
type word struct {
	surface string
	term    string
}

// token is a word of a question after synonyms were applied: canon tokens are canonical terms.
type token struct {
	text  string
	canon bool
}

// words drops stop words and single letters from tokens and stems the rest; canonical terms stay as they are.
func (a *analyzer) words(tokens []token) []word {
	out := make([]word, 0, len(tokens))
	keep := make([]bool, 0, len(tokens))
	stream := make(analysis.TokenStream, 0, len(tokens))
	for _, t := range tokens {
		if t.canon {
			out = append(out, word{surface: t.text, term: t.text})
			keep = append(keep, true)
			continue
		}
		if len(t.text) < 2 && !isDigit(t.text) {
			continue
		}
		stream = append(stream, &analysis.Token{Term: []byte(t.text), Start: len(out)})
		out = append(out, word{surface: t.text})
		keep = append(keep, false)
	}
	for _, filter := range a.filters {
		stream = filter.Filter(stream)
	}
	// Tokens that survived the filters carry their index in out; the rest were stop words.
	for _, t := range stream {
		out[t.Start].term = string(t.Term)
		keep[t.Start] = true
	}
	j := 0
	for i, w := range out {
		if keep[i] {
			out[j] = w
			j++
		}
	}
	return out[:j]
}

func isDigit(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

// synonyms replaces words and phrases by a canonical term, longest phrase first.
type synonyms struct {
	byFirst map[string][]phrase // first word -> phrases starting with it, longest first
}

type phrase struct {
	words []string
	canon string
}

func newSynonyms(m map[string]string) *synonyms {
	s := &synonyms{byFirst: map[string][]phrase{}}
	for k, canon := range m {
		words := strings.Fields(k)
		s.byFirst[words[0]] = append(s.byFirst[words[0]], phrase{words: words, canon: canon})
	}
	for _, ps := range s.byFirst {
		slices.SortFunc(ps, func(a, b phrase) int {
			if len(a.words) != len(b.words) {
				return len(b.words) - len(a.words)
			}
			return strings.Compare(strings.Join(a.words, " "), strings.Join(b.words, " "))
		})
	}
	return s
}

// tokens splits folded text into tokens, replacing each synonym by its canonical term.
func (s *synonyms) tokens(folded string) []token {
	fields := strings.Fields(folded)
	out := make([]token, 0, len(fields))
	for i := 0; i < len(fields); {
		canon, n := s.match(fields[i:])
		if n > 0 {
			out = append(out, token{text: canon, canon: true})
			i += n
			continue
		}
		out = append(out, token{text: fields[i]})
		i++
	}
	return out
}

// match returns the canonical term of the longest synonym at the start of fields, and how many fields it spans.
func (s *synonyms) match(fields []string) (string, int) {
	for _, p := range s.byFirst[fields[0]] {
		if len(p.words) <= len(fields) && slices.Equal(p.words, fields[:len(p.words)]) {
			return p.canon, len(p.words)
		}
	}
	return "", 0
}
