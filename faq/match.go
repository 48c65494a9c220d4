package faq

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode"

	"github.com/abadojack/whatlanggo"
)

// Decision is what the help desk does with a question.
type Decision string

const (
	Answer   Decision = "answer"   // confident: answer with the entry
	Suggest  Decision = "suggest"  // likely: offer up to three entries to choose from
	Escalate Decision = "escalate" // nothing fits, or the person asked for a human
)

// Reasons for an escalation.
const (
	ReasonHuman   = "human"    // the person asked for a human
	ReasonNoMatch = "no_match" // no entry fits well enough
	ReasonEmpty   = "empty"    // nothing in the question to go on
)

// Config holds the matcher's thresholds and the platform's default language. Answer is a probability (the
// confidence model's, see confidence.go); Suggest and Human are cosine similarities in [0, 1].
type Config struct {
	Answer  float64 // the confidence that the best entry is right must reach this to answer
	Suggest float64 // entries scoring at least this are offered as suggestions
	Human   float64 // a request for a person scoring at least this escalates
	Lang    Lang    // the reply language when neither the question nor the hints tell
}

// DefaultConfig returns the calibrated thresholds, with English as the default language. The answer threshold is
// the one `make model` found to answer right 98 times in 100 on questions the model was not trained on.
func DefaultConfig() Config {
	return Config{Answer: modelAnswer, Suggest: 0.18, Human: 0.33, Lang: "en"}
}

// Hint is what the help desk knows of the person's language apart from the question's words.
type Hint struct {
	App  Lang // the language the person's chat app reports, or ""
	Chat Lang // the language of the conversation so far, or ""
}

// MaxSuggestions is how many entries a suggestion offers.
const MaxSuggestions = 3

// Scored is an entry with its score for a question.
type Scored struct {
	Entry *Entry
	Score float64
}

// Result is the matcher's decision for a question.
type Result struct {
	Decision Decision
	Reason   string  // why it escalated
	Lang     Lang    // the language to reply in
	Entry    *Entry  // the answer, when Decision is Answer
	Score    float64 // the best entry's score (or the request for a person's)
	// Confidence is the confidence model's probability that the best entry is the right answer; 0 when the model
	// did not run (small talk, a request for a person, an empty question).
	Confidence float64
	// Suggestions are the entries to offer: the choices when suggesting, further reading when answering.
	Suggestions []Scored
}

// Matcher ranks the entries of a Base for a question. It is safe for concurrent use.
type Matcher struct {
	base      *Base
	cfg       Config
	syn       *synonyms
	indexes   []*index          // one per language, in the order of Langs
	stopWords []map[string]bool // each language's standard stop words, folded, in the order of Langs
	known     map[string]bool   // every word of every index as written (folded): typo correction leaves them alone
	handoff   int32             // the unit number of the handoff phrasings: one past the last entry
	// Small talk ("hi", "thanks a lot!", "are you a bot?") is mostly stop words, which the index drops, and its
	// few other words ("much", "great", "help") would draw questions away from their answers, so it is kept out of
	// the index and recognised whole: said maps each folded small-talk phrasing to its entry, and chat holds the
	// words of every phrasing for messages that say the same in other words.
	said     map[string]smallTalk
	chat     []chatPhrase
	stop     map[string]bool // the stop words of every language, folded
	indexed  map[string]bool // the words of the indexes: of the entries other than small talk, and of handoff.yaml
	requests []requestWords  // per language, in the order of Langs
	refusals [][]refusal     // per language: the out-of-scope entries' When words
}

// refusal is an out-of-scope entry's When in one language: a question with a word of every group is declined.
type refusal struct {
	entry  *Entry
	groups []wordSet
}

// requestWords are one language's RequestWords, folded, with their stems: "consultants" is "consultant".
type requestWords struct {
	people, contact, addressed, asking, details, me wordSet
}

type wordSet struct {
	surface, stems map[string]bool
	phrases        []string // entries of several words ("quelqu un"), matched in the folded question
}

func newWordSet(an *analyzer, syn *synonyms, words []string) wordSet {
	ws := wordSet{surface: map[string]bool{}, stems: map[string]bool{}}
	for _, w := range words {
		f := foldPhrase(w)
		if strings.Contains(f, " ") {
			ws.phrases = append(ws.phrases, " "+f+" ")
			continue
		}
		ws.surface[f] = true
		for _, a := range an.words(syn.tokens(f)) {
			ws.stems[a.term] = true
		}
	}
	return ws
}

// onlyPeople reports whether a question's every term is a word of people or of a request: a message that only
// names someone ("operator!", "un asesor humano por favor") asks for them.
func (rw requestWords) onlyPeople(terms map[string]bool) bool {
	for t := range terms {
		if !rw.people.stems[t] && !rw.asking.stems[t] && !rw.addressed.stems[t] {
			return false
		}
	}
	return len(terms) > 0
}

func (ws wordSet) in(folded string, words map[string]bool, terms map[string]bool) bool {
	for w := range words {
		if ws.surface[w] {
			return true
		}
	}
	for t := range terms {
		if ws.stems[t] {
			return true
		}
	}
	for _, p := range ws.phrases {
		if strings.Contains(" "+folded+" ", p) {
			return true
		}
	}
	return false
}

type smallTalk struct {
	entry *Entry
	langs []Lang
}

type chatPhrase struct {
	entry *Entry
	lang  Lang
	words map[string]bool
}

// maxSmallTalkWords is the longest message read as small talk when it is not one of the phrasings.
const maxSmallTalkWords = 8

// NewMatcher indexes a base.
func NewMatcher(b *Base, cfg Config) *Matcher {
	loadWords()
	m := &Matcher{base: b, cfg: cfg, syn: newSynonyms(b.Synonyms), handoff: int32(len(b.Entries))}
	for _, lang := range Langs {
		var texts []unitText
		for i, e := range b.Entries {
			if e.Kind == KindSmallTalk || e.Kind == KindThanks {
				continue
			}
			t := e.Text[lang]
			for _, q := range t.Questions {
				texts = append(texts, unitText{unit: int32(i), text: q, weight: 1})
			}
			texts = append(texts, unitText{unit: int32(i), text: t.Answer, weight: answerWeight})
		}
		for _, q := range b.Handoff[lang] {
			texts = append(texts, unitText{unit: m.handoff, text: q, weight: 1})
		}
		an := newAnalyzer(lang, b.StopWords)
		m.indexes = append(m.indexes, buildIndex(an, m.syn, texts, len(b.Entries)+1))
		rw := b.Requests[lang]
		m.requests = append(m.requests, requestWords{
			people:    newWordSet(an, m.syn, rw.People),
			contact:   newWordSet(an, m.syn, rw.Contact),
			addressed: newWordSet(an, m.syn, rw.Addressed),
			asking:    newWordSet(an, m.syn, rw.Asking),
			details:   newWordSet(an, m.syn, rw.Details),
			me:        newWordSet(an, m.syn, rw.Me),
		})
		var refusals []refusal
		for _, e := range b.Entries {
			if when := e.Text[lang].When; e.Kind == KindOutOfScope && len(when) > 0 {
				rf := refusal{entry: e}
				for _, g := range when {
					rf.groups = append(rf.groups, newWordSet(an, m.syn, g))
				}
				refusals = append(refusals, rf)
			}
		}
		m.refusals = append(m.refusals, refusals)
	}
	for _, lang := range Langs {
		m.stopWords = append(m.stopWords, standardStopWords(lang))
	}
	m.said = map[string]smallTalk{}
	for _, e := range b.Entries {
		if e.Kind != KindSmallTalk && e.Kind != KindThanks {
			continue
		}
		for _, lang := range Langs {
			for _, q := range e.Text[lang].Questions {
				k := foldPhrase(q)
				st := m.said[k] // the loader made sure no phrasing is small talk of two entries
				st.entry = e
				if !slices.Contains(st.langs, lang) {
					st.langs = append(st.langs, lang)
				}
				m.said[k] = st
				cp := chatPhrase{entry: e, lang: lang, words: map[string]bool{}}
				for _, w := range strings.Fields(k) {
					cp.words[w] = true
				}
				m.chat = append(m.chat, cp)
			}
		}
	}
	m.known, m.indexed = map[string]bool{}, map[string]bool{}
	for _, ix := range m.indexes {
		for w := range ix.surface {
			m.known[w], m.indexed[w] = true, true
		}
	}
	for w := range b.Synonyms { // "rsc", which the indexes know as "csr"
		m.indexed[w] = true
	}
	for _, cp := range m.chat {
		for w := range cp.words {
			m.known[w] = true
		}
	}
	m.stop = map[string]bool{}
	for _, sw := range m.stopWords {
		maps.Copy(m.stop, sw)
	}
	for _, w := range b.StopWords {
		m.stop[w] = true
	}
	return m
}

// smallTalk recognises a message that is not one of the small-talk phrasings (those are in m.said) as small talk
// when it is short and its every word but stop words is a word of one small-talk entry's phrasings, taking the
// entry and language of the phrasing that shares the most of its words (Jaccard). "thanks a lot, really useful" is
// thanks; "how much is a new lathe" is not, as no small-talk entry says "lathe".
func (m *Matcher) smallTalk(folded string) (*Entry, []Lang) {
	words := strings.Fields(folded)
	if len(words) == 0 || len(words) > maxSmallTalkWords {
		return nil, nil
	}
	covers := map[*Entry]bool{}
	for _, cp := range m.chat {
		if _, seen := covers[cp.entry]; !seen {
			covers[cp.entry] = m.vocabulary(cp.entry, words)
		}
	}
	// The entry whose phrasings have the most of the message's words other than stop words wins, then its
	// closest phrasing (Jaccard); when the message has such words, the winner has one: "du bist echt nutzlos" is
	// an insult ("echt", "nutzlos"), not "bist du echt?".
	own := map[*Entry]int{}
	for _, w := range uniq(words) {
		if m.stop[w] {
			continue
		}
		for e := range covers {
			if covers[e] && m.entryWord(e, w) {
				own[e]++
			}
		}
	}
	content := 0
	for _, w := range uniq(words) {
		if !m.stop[w] {
			content++
		}
	}
	var best *chatPhrase
	bestOwn, bestScore := 0, 0.0
	for i := range m.chat {
		cp := &m.chat[i]
		if !covers[cp.entry] || content > 0 && own[cp.entry] == 0 {
			continue
		}
		shared := 0
		for _, w := range uniq(words) {
			if cp.words[w] {
				shared++
			}
		}
		j := float64(shared) / float64(len(cp.words)+len(uniq(words))-shared)
		if o := own[cp.entry]; o > bestOwn || o == bestOwn && j > bestScore {
			best, bestOwn, bestScore = cp, o, j
		}
	}
	if best == nil {
		return nil, nil
	}
	return best.entry, []Lang{best.lang}
}

// vocabulary reports whether every word that is not a stop word is a word of one of e's phrasings, or a word
// the knowledge base's answers and questions never use: "danke, das hat mir echt weitergeholfen" is thanks, but
// "thanks, and what about scope 3?" asks more.
func (m *Matcher) vocabulary(e *Entry, words []string) bool {
	for _, w := range words {
		if !m.stop[w] && m.indexed[w] && !m.entryWord(e, w) {
			return false
		}
	}
	return true
}

// entryWord reports whether w is a word of one of e's phrasings.
func (m *Matcher) entryWord(e *Entry, w string) bool {
	for _, cp := range m.chat {
		if cp.entry == e && cp.words[w] {
			return true
		}
	}
	return false
}

func uniq(words []string) []string {
	out := slices.Clone(words)
	slices.Sort(out)
	return slices.Compact(out)
}

// Base returns the knowledge base the matcher was built from.
func (m *Matcher) Base() *Base { return m.base }

// Config returns the matcher's settings.
func (m *Matcher) Config() Config { return m.cfg }

// WithConfig returns a matcher over the same index with other thresholds.
func (m *Matcher) WithConfig(cfg Config) *Matcher {
	c := *m
	c.cfg = cfg
	return &c
}

// ranking is the outcome of scoring one question.
type ranking struct {
	ranked  []Scored   // best first
	from    []int8     // per entry number: the language index that gave its score
	queries []queryVec // per language index: the question as that index read it
	handoff float64    // how much the question reads as a request for a person
	asks    bool       // the question has the words of a request for a person (requestWords)
	refusal *Entry     // the out-of-scope entry whose When words the question has
	empty   bool       // no word of the question survived analysis
}

// rank scores every entry for question. Entries are scored in every language's index and keep their best score,
// so a question in one language still finds an entry through the acronyms and terms it shares with another.
func (m *Matcher) rank(question, folded string, prefer Lang, home int) ranking {
	tokens := m.syn.tokens(folded)
	scores := make([]float64, len(m.base.Entries)+1)
	rd := m.read(folded, tokens)
	r := ranking{empty: true, asks: m.asks(folded, rd), refusal: m.refusal(folded, rd), from: make([]int8, len(scores)), queries: make([]queryVec, len(Langs))}
	keep := m.keep(question)
	for _, li := range langOrder(prefer) {
		ix := m.indexes[li]
		q := ix.query(tokens, keep, li, home)
		r.queries[li] = q
		if q.words > 0 {
			r.empty = false
		}
		if len(q.terms) == 0 {
			continue
		}
		ix.score(q, scores, r.from, int8(li))
	}
	r.handoff = scores[m.handoff]
	for i, e := range m.base.Entries {
		if scores[i] > 0 {
			r.ranked = append(r.ranked, Scored{Entry: e, Score: scores[i]})
		}
	}
	slices.SortFunc(r.ranked, func(a, b Scored) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Entry.ID, b.Entry.ID)
	})
	return r
}

// read is a question's words as the request and refusal words see them: its folded words, and per language its
// terms (stems), with a typo of a known word read as that word ("anrufn").
type read struct {
	words map[string]bool
	terms []map[string]bool // per language index
}

func (m *Matcher) read(folded string, tokens []token) read {
	rd := read{words: map[string]bool{}}
	for _, w := range strings.Fields(folded) {
		rd.words[w] = true
	}
	for _, ix := range m.indexes {
		terms := map[string]bool{}
		for _, w := range ix.an.words(tokens) {
			terms[w.term] = true
			if _, known := ix.terms[w.term]; !known {
				if t, ok := ix.correct(w.surface); ok {
					terms[t] = true
				}
			}
		}
		rd.terms = append(rd.terms, terms)
	}
	return rd
}

// asks reports whether a question, in one language, names someone of people and a way of getting in touch
// (contact), and points at the platform or the person asking (addressed) or asks (asking): "could one of your
// advisers call me?" asks for a person whatever else it says; "who should be our contact person for
// whistleblowing?" does not, and neither does "could you explain human rights due diligence?". A message that only
// names such people ("agent humain", "Mitarbeiter bitte") asks for them too. One that names contact details asks
// where to write ("is there an email address of your team?") unless the person asking is the one to reach
// ("please ring me, my number is in my profile").
func (m *Matcher) asks(folded string, rd read) bool {
	for li, rw := range m.requests {
		words, terms := rd.words, rd.terms[li]
		if !rw.people.in(folded, words, terms) {
			continue
		}
		if rw.details.in(folded, words, terms) && !rw.me.in(folded, words, terms) {
			continue
		}
		if rw.onlyPeople(terms) ||
			rw.contact.in(folded, words, terms) && (rw.addressed.in(folded, words, terms) || rw.asking.in(folded, words, terms)) {
			return true
		}
	}
	return false
}

// refusal returns the out-of-scope entry whose When words the question has, in any language, or nil.
func (m *Matcher) refusal(folded string, rd read) *Entry {
	for li, rfs := range m.refusals {
		for _, rf := range rfs {
			all := true
			for _, g := range rf.groups {
				if !g.in(folded, rd.words, rd.terms[li]) {
					all = false
					break
				}
			}
			if all {
				return rf.entry
			}
		}
	}
	return nil
}

// keep returns the words of a question that typo correction leaves alone: the words of every index, and the words
// the question writes in capitals, which are names and acronyms ("AENOR" is not "menor").
func (m *Matcher) keep(question string) func(string) bool {
	names := foldedAcronyms(question)
	return func(w string) bool { return m.known[w] || names[w] }
}

// langOrder lists the language indexes with prefer first, then English, so that ties go to them.
func langOrder(prefer Lang) []int {
	order := make([]int, 0, len(Langs))
	add := func(l Lang) {
		for i, x := range Langs {
			if x == l && !slices.Contains(order, i) {
				order = append(order, i)
			}
		}
	}
	add(prefer)
	for _, l := range Langs {
		add(l)
	}
	return order
}

// Match decides what to do with a question.
func (m *Matcher) Match(question string, hint Hint) Result {
	res, _ := m.match(question, hint)
	return res
}

func (m *Matcher) match(question string, hint Hint) (Result, ranking) {
	folded := foldPhrase(question)
	st, said, lang, sure := m.readLang(question, folded, hint)
	if said {
		return m.smallTalkResult(st.entry, lang)
	}
	home := -1 // the question's language, when its words make it clear: other languages then match only loanwords
	if sure {
		home = slices.Index(Langs, lang)
	}
	r := m.rank(question, folded, lang, home)
	if st.entry != nil && r.handoff < m.cfg.Human && !r.asks { // not "a human, not a bot"
		return m.smallTalkResult(st.entry, lang)
	}
	res := Result{Lang: lang}
	m.decide(r, &res)
	return res, r
}

// readLang finds the small talk a question may be and the language to reply in. Small talk is recognised whole:
// one of its phrasings (said), or a short message in their words (st.entry without said). Its phrasings are the
// message itself, so their languages are evidence of the message's.
func (m *Matcher) readLang(question, folded string, hint Hint) (st smallTalk, said bool, lang Lang, sure bool) {
	st, said = m.said[folded]
	if !said {
		st.entry, st.langs = m.smallTalk(folded)
	}
	lang, sure = m.replyLang(question, folded, st.langs, hint)
	return st, said, lang, sure
}

func (m *Matcher) smallTalkResult(e *Entry, lang Lang) (Result, ranking) {
	return Result{Decision: Answer, Entry: e, Score: 1, Lang: lang}, ranking{ranked: []Scored{{Entry: e, Score: 1}}}
}

// ownWords are short words of chat that only one of the languages writes, accents and all: the standard stop-word
// lists leave out question words ("qué", "où") and chat abbreviations ("svp"), and the word lists are folded.
var ownWords = map[string]Lang{
	"qué": "es", "cómo": "es", "cuál": "es", "cuáles": "es", "dónde": "es", "cuándo": "es", "quién": "es",
	"cuánto": "es", "cuánta": "es", "cuántos": "es", "cuántas": "es", "más": "es", "está": "es", "también": "es",
	"porfa": "es",
	"où":    "fr", "ça": "fr", "très": "fr", "déjà": "fr", "svp": "fr", "stp": "fr",
	"è": "it", "più": "it", "perché": "it", "cioè": "it", "così": "it", "già": "it", "può": "it",
	"für": "de", "über": "de", "gibt": "de",
}

// wordVote is what a word of the word lists (isWordIn) adds to the languages it belongs to.
const wordVote = 0.5

// How much the chat app's language and the conversation's count when the question's own words point to several
// languages: less than one function word, so that they only break near ties.
const (
	appVote  = 0.75
	chatVote = 0.5
)

// replyLang is the language to reply in: the question's own when its words say (langVotes, and the languages of
// the small-talk phrasing it is, if any), with the hints as further evidence; when they do not ("scope 3?",
// "ISO 26000"), the chat app's language, then the conversation's, then the platform's default. Never the language
// of whichever phrasing matched: acronyms and loanwords are in the phrasings of every language. sure reports
// whether the words alone left no doubt.
func (m *Matcher) replyLang(question, folded string, said []Lang, hint Hint) (lang Lang, sure bool) {
	votes := m.langVotes(question, folded)
	for _, l := range said { // "danke" says German; "ok", said everywhere, says little
		votes[slices.Index(Langs, l)] += 1 / float64(len(said))
	}
	fromText := false
	for _, v := range votes {
		fromText = fromText || v >= 1
	}
	// Ties and a question without evidence go to the chat app's language, the conversation's, the default.
	order := []Lang{hint.App, hint.Chat, m.cfg.Lang}
	if !fromText {
		can := Langs
		if len(said) > 0 {
			can = said
		}
		for _, l := range order {
			if slices.Contains(can, l) {
				return l, false
			}
		}
		return can[0], false
	}
	own := votes
	if i := slices.Index(Langs, hint.App); i >= 0 {
		votes[i] += appVote
	}
	if i := slices.Index(Langs, hint.Chat); i >= 0 {
		votes[i] += chatVote
	}
	best := -1
	for _, l := range append(order, Langs...) {
		if i := slices.Index(Langs, l); i >= 0 && (best < 0 || votes[i] > votes[best]) {
			best = i
		}
	}
	// Sure when the words alone put the language a clear vote ahead of every other.
	sure = true
	for i, v := range own {
		if i != best && own[best]-v < 1 {
			sure = false
		}
	}
	return Langs[best], sure
}

// decide fills in the decision for a ranking with the matcher's thresholds: answer when the confidence model is
// sure enough of the best entry, else offer the likely entries, else hand over.
func (m *Matcher) decide(r ranking, res *Result) {
	switch {
	case r.empty:
		res.Decision, res.Reason = Escalate, ReasonEmpty
		return
	case r.handoff >= m.cfg.Human || r.asks:
		res.Decision, res.Reason, res.Score = Escalate, ReasonHuman, r.handoff
		return
	case r.refusal != nil: // declined whatever topic words it has: "which consultant do you recommend for ISO 14001?"
		res.Decision, res.Entry, res.Score, res.Confidence = Answer, r.refusal, 1, 1
		return
	}
	var s1 float64
	if len(r.ranked) > 0 {
		s1 = r.ranked[0].Score
		res.Confidence = confidence(modelWeights, m.features(r, res.Lang))
	}
	res.Score = s1
	switch {
	case s1 >= m.cfg.Suggest && res.Confidence >= m.cfg.Answer: // never on less than a suggestion would need
		res.Decision, res.Entry = Answer, r.ranked[0].Entry
		res.Suggestions = m.suggestions(r.ranked[1:])
	case s1 >= m.cfg.Suggest:
		res.Suggestions = m.suggestions(r.ranked)
		res.Decision = Suggest
		if len(res.Suggestions) == 0 { // only out-of-scope and small-talk entries came close
			res.Decision, res.Reason = Escalate, ReasonNoMatch
		}
	default:
		res.Decision, res.Reason = Escalate, ReasonNoMatch
	}
	if res.Decision == Answer && !res.Entry.Scoped() {
		res.Suggestions = nil
	}
}

// suggestions returns the first answers of ranked that reach the suggestion threshold, at most MaxSuggestions.
// Out-of-scope and small-talk entries are never offered.
func (m *Matcher) suggestions(ranked []Scored) []Scored {
	var out []Scored
	for _, s := range ranked {
		if s.Score < m.cfg.Suggest || len(out) == MaxSuggestions {
			break
		}
		if s.Entry.Scoped() {
			out = append(out, s)
		}
	}
	return out
}

var detectOptions = whatlanggo.Options{Whitelist: map[whatlanggo.Lang]bool{
	whatlanggo.Eng: true, whatlanggo.Deu: true, whatlanggo.Ita: true, whatlanggo.Fra: true, whatlanggo.Spa: true,
}}

var fromWhatlang = map[whatlanggo.Lang]Lang{
	whatlanggo.Eng: "en", whatlanggo.Deu: "de", whatlanggo.Ita: "it", whatlanggo.Fra: "fr", whatlanggo.Spa: "es",
}

// langVotes weighs the evidence a question's words give for each language, in the order of Langs. Chat questions
// are short, where trigram statistics (whatlanggo) alone are weak; the function words each language's stop list
// holds ("the", "und", "per", "les", "una") are strong, and so are words that only some languages have ("huella").
// Each stop word votes for its languages, each word of the word lists shares wordVote among its languages, and
// whatlanggo adds its confidence (0 to 1) to its guess. A language with at least one vote is evidence.
func (m *Matcher) langVotes(question, folded string) [5]float64 {
	if len(question) > MaxQuery {
		question = question[:MaxQuery]
	}
	var votes [5]float64
	names := foldedAcronyms(question)
	for _, w := range strings.Fields(folded) {
		if !names[w] { // "ESA" is not the Spanish "esa"
			for i, stop := range m.stopWords {
				if stop[w] {
					votes[i]++
				}
			}
		}
		// A longer word found in the word lists of some of the languages only votes for them, with half a stop
		// word's weight shared among them: "huella" is Spanish, "carbono" Spanish or Italian.
		var in []int
		for li := range Langs {
			if isWordIn(w, li) {
				in = append(in, li)
			}
		}
		if len(in) > 0 && len(in) < len(Langs) {
			for _, li := range in {
				votes[li] += wordVote / float64(len(in))
			}
		}
	}
	// Words only one of the languages writes so; folding makes "qué" the "que" of three languages.
	for _, w := range strings.FieldsFunc(strings.ToLower(question), func(r rune) bool { return !unicode.IsLetter(r) }) {
		if l, ok := ownWords[w]; ok {
			votes[slices.Index(Langs, l)]++
		}
	}
	// Letters only one of the languages writes; folding drops them.
	if strings.ContainsAny(question, "¿¡") {
		votes[slices.Index(Langs, "es")]++
	}
	if strings.ContainsRune(question, 'ß') {
		votes[slices.Index(Langs, "de")]++
	}
	info := whatlanggo.DetectWithOptions(question, detectOptions)
	if l, ok := fromWhatlang[info.Lang]; ok {
		votes[slices.Index(Langs, l)] += info.Confidence
	}
	return votes
}

// foldedAcronyms returns, folded, the words of a question written in capitals only ("AENOR", "CSRD"), unless the
// whole message is: shouting is no list of names. It is nil when there are none.
func foldedAcronyms(question string) map[string]bool {
	if len(question) > MaxQuery {
		question = question[:MaxQuery]
	}
	if !strings.ContainsFunc(question, unicode.IsLower) {
		return nil
	}
	var out map[string]bool
	for _, raw := range strings.Fields(question) {
		if !acronym(raw) {
			continue
		}
		if out == nil {
			out = map[string]bool{}
		}
		for _, w := range strings.Fields(foldPhrase(raw)) {
			out[w] = true
		}
	}
	return out
}

// acronym reports whether a word is written in capitals only, with two letters or more.
func acronym(w string) bool {
	letters := 0
	for _, r := range w {
		switch {
		case unicode.IsLower(r):
			return false
		case unicode.IsUpper(r):
			letters++
		}
	}
	return letters >= 2
}

// The weight of an entry's answer text relative to its phrasings of the question: an answer mentions many
// things it is not about.
const answerWeight = 0.6

type unitText struct {
	unit   int32 // entry number, or the handoff unit
	text   string
	weight float64
}

// index is one language's inverted index over the phrasings (and answers) of every entry. Each text is a
// document: a TF-IDF vector, normalised; a question's score for an entry is its best cosine similarity with one
// of the entry's documents.
type index struct {
	an        *analyzer
	terms     map[string]int32
	idf       []float64
	postings  [][]posting
	centroids [][]posting // term -> (unit, weight in the unit's centroid)
	docs      []docInfo
	surface   map[string]string   // folded word as written -> its term, for typo correction
	deletes   map[string][]string // a word with one letter deleted -> the words it came from
	unknown   float64             // the weight of a word the index has never seen
}

type posting struct {
	doc int32
	w   float64 // the term's weight in the normalised document vector
}

type docInfo struct {
	unit   int32
	weight float64
}

func buildIndex(an *analyzer, syn *synonyms, texts []unitText, units int) *index {
	ix := &index{an: an, terms: map[string]int32{}, surface: map[string]string{}, deletes: map[string][]string{}}
	docTerms := make([][]string, len(texts))
	df := map[string]map[int32]bool{}
	for i, t := range texts {
		for _, w := range an.words(syn.tokens(foldPhrase(t.text))) {
			docTerms[i] = append(docTerms[i], w.term)
			if df[w.term] == nil {
				df[w.term] = map[int32]bool{}
			}
			df[w.term][t.unit] = true
			if _, ok := ix.surface[w.surface]; !ok {
				ix.surface[w.surface] = w.term
				ix.addDeletes(w.surface)
			}
		}
	}
	// Terms get ids in sorted order so that the index is the same on every build.
	sorted := make([]string, 0, len(df))
	for term := range df {
		sorted = append(sorted, term)
	}
	slices.Sort(sorted)
	maxIDF := 0.0
	for _, term := range sorted {
		ix.terms[term] = int32(len(ix.idf))
		idf := math.Log(1 + float64(units)/float64(len(df[term])))
		ix.idf = append(ix.idf, idf)
		maxIDF = max(maxIDF, idf)
	}
	ix.unknown = maxIDF * unknownWeight
	ix.postings = make([][]posting, len(ix.idf))
	ix.centroids = make([][]posting, len(ix.idf))
	centroid := make([]map[int32]float64, units)
	for i, terms := range docTerms {
		vec := normalised(ix, terms)
		if vec == nil {
			continue
		}
		t := texts[i]
		doc := int32(len(ix.docs))
		ix.docs = append(ix.docs, docInfo{unit: t.unit, weight: t.weight})
		for id, w := range vec {
			ix.postings[id] = append(ix.postings[id], posting{doc: doc, w: w})
		}
		if t.weight == 1 { // a phrasing of the question
			if centroid[t.unit] == nil {
				centroid[t.unit] = map[int32]float64{}
			}
			for id, w := range vec {
				centroid[t.unit][id] += w
			}
		}
	}
	for unit, vec := range centroid {
		norm := 0.0
		for _, w := range vec {
			norm += w * w
		}
		norm = math.Sqrt(norm)
		for id, w := range vec {
			ix.centroids[id] = append(ix.centroids[id], posting{doc: int32(unit), w: w / norm})
		}
	}
	return ix
}

// normalised returns the unit-length TF-IDF vector of a document's terms, or nil if it has none.
func normalised(ix *index, terms []string) map[int32]float64 {
	if len(terms) == 0 {
		return nil
	}
	vec := map[int32]float64{}
	for _, term := range terms {
		vec[ix.terms[term]]++
	}
	norm := 0.0
	for id, n := range vec {
		w := (1 + math.Log(n)) * ix.idf[id]
		vec[id] = w
		norm += w * w
	}
	norm = math.Sqrt(norm)
	for id := range vec {
		vec[id] /= norm
	}
	return vec
}

// unknownWeight scales the weight of a word that is in no entry, relative to the rarest known word. Such words make
// a question less like every entry: off-topic questions are mostly made of them.
const unknownWeight = 0.7

// minFuzzy is the shortest word that typo correction touches: short words have too many neighbours. maxFuzzy
// is the longest: beyond it a "word" is noise, and its deletions would cost more than the rest of the question.
const (
	minFuzzy = 5
	maxFuzzy = 40
)

func (ix *index) addDeletes(w string) {
	if len(w) < minFuzzy {
		return
	}
	for _, d := range deletes1(w) {
		if !slices.Contains(ix.deletes[d], w) {
			ix.deletes[d] = append(ix.deletes[d], w)
		}
	}
}

// deletes1 returns w with each one of its letters left out.
func deletes1(w string) []string {
	out := make([]string, 0, len(w))
	for i := range len(w) {
		out = append(out, w[:i]+w[i+1:])
	}
	return out
}

type queryVec struct {
	terms []int32
	w     []float64
	norm  float64 // includes the weight of unknown words
	words int     // words left after stop words, known or not
}

// query analyses a question into a weighted vector of the index's terms; li is the index's language and home the
// question's, both as positions in Langs (home -1 when the question's language is not clear). A word that no
// language's index knows is corrected to a known word one or two typos away unless it is a real word (isWord), or
// split into two known words (German compounds); failing that, or when the word belongs to another language, it
// only adds to the vector's length.
func (ix *index) query(tokens []token, keep func(string) bool, li, home int) queryVec {
	var q queryVec
	add := func(id int32, w float64) {
		for i, t := range q.terms {
			if t == id {
				q.w[i] += w
				return
			}
		}
		q.terms = append(q.terms, id)
		q.w = append(q.w, w)
	}
	unknown := 0.0
	words := ix.an.words(tokens)
	q.words = len(words)
	for _, w := range words {
		if _, written := ix.surface[w.surface]; home >= 0 && li != home && (!written || isWordIn(w.surface, home)) {
			// Another language than the question's (home) shares acronyms, names and loanwords with it, written
			// the same; its stems, typos and words that are words of the question's language too would be false
			// friends ("carbonara" is no Spanish "carbono", the French "donne" no Italian "donne").
			unknown += ix.unknown * ix.unknown
			continue
		}
		if id, ok := ix.terms[w.term]; ok {
			add(id, ix.idf[id])
			continue
		}
		if keep(w.surface) {
			unknown += ix.unknown * ix.unknown
			continue
		}
		if term, ok := ix.correct(w.surface); ok {
			id := ix.terms[term]
			add(id, ix.idf[id]*typoWeight)
			continue
		}
		if a, b, ok := ix.split(w.surface); ok {
			add(ix.terms[a], ix.idf[ix.terms[a]]*typoWeight)
			add(ix.terms[b], ix.idf[ix.terms[b]]*typoWeight)
			continue
		}
		unknown += ix.unknown * ix.unknown
	}
	if len(q.terms) == 0 {
		return queryVec{words: q.words}
	}
	norm := unknown
	for _, w := range q.w {
		norm += w * w
	}
	q.norm = math.Sqrt(norm)
	return q
}

// typoWeight discounts words the matcher had to correct.
const typoWeight = 0.8

// correct finds the known word closest to w: one edit away for short words, two for long ones. Candidates come
// from the deletion index (SymSpell's idea): a known word and w share a string when each has at most one letter
// deleted, which finds every word one edit away and those two edits away by two substitutions or an insertion
// and a deletion; the edit distance then decides.
func (ix *index) correct(w string) (string, bool) {
	// A real word of one of the languages is not a typo, however close to a known word: "carbonara" is not
	// "carbon", "Milan" is not "bilan".
	if len(w) < minFuzzy || len(w) > maxFuzzy || isDigit(w) || isWord(w) {
		return "", false
	}
	maxDist := 1
	if len(w) >= 8 {
		maxDist = 2
	}
	best, bestDist := "", maxDist+1
	consider := func(cand string) {
		if d := osaDistance(w, cand, bestDist+1); d < bestDist || (d == bestDist && cand < best) {
			best, bestDist = cand, d
		}
	}
	lookup := func(key string) {
		if _, ok := ix.surface[key]; ok && len(key) >= minFuzzy {
			consider(key) // w is a known word with a letter added
		}
		for _, cand := range ix.deletes[key] {
			consider(cand)
		}
	}
	lookup(w)
	for _, d := range deletes1(w) {
		lookup(d)
	}
	if bestDist > maxDist {
		return "", false
	}
	return ix.surface[best], true
}

// split breaks a compound such as "nachhaltigkeitsbericht" into two known words, allowing a linking s.
func (ix *index) split(w string) (string, string, bool) {
	if len(w) < 2*minFuzzy || len(w) > 2*maxFuzzy {
		return "", "", false
	}
	for i := len(w) - minFuzzy; i >= minFuzzy; i-- {
		right, ok := ix.surface[w[i:]]
		if !ok {
			continue
		}
		left, ok := ix.surface[w[:i]]
		if !ok && w[i-1] == 's' {
			left, ok = ix.surface[w[:i-1]]
		}
		if ok {
			return left, right, true
		}
	}
	return "", "", false
}

// osaDistance is the optimal-string-alignment edit distance (insertions, deletions, substitutions and
// transpositions of neighbours) between a and b, or limit when it is at least limit.
func osaDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return min(prev[len(b)], limit)
}

// score computes, for every unit, the question's best cosine similarity with one of its documents, blended with
// its similarity to the centroid of the unit's phrasings: a word found in one phrasing only counts for less than
// one the phrasings share. It raises scores[unit] to that value (languages compete through scores), noting in
// from[unit] the index's language li.
func (ix *index) score(q queryVec, scores []float64, from []int8, li int8) {
	best := make(map[int32]float64, 32) // unit -> best document similarity
	dots := make(map[int32]float64, 64)
	cent := make(map[int32]float64, 32)
	for i, id := range q.terms {
		for _, p := range ix.postings[id] {
			dots[p.doc] += p.w * q.w[i]
		}
		for _, p := range ix.centroids[id] {
			cent[p.doc] += p.w * q.w[i]
		}
	}
	for doc, dot := range dots {
		d := ix.docs[doc]
		best[d.unit] = max(best[d.unit], dot/q.norm*d.weight)
	}
	for unit, b := range best {
		if s := centroidShare*cent[unit]/q.norm + (1-centroidShare)*b; s > scores[unit] {
			scores[unit], from[unit] = s, li
		}
	}
}

// detail breaks a unit's score for q down: its best document's similarity, its centroid's, and the share of the
// question's weight (known and unknown words) that the unit's documents contain.
func (ix *index) detail(q queryVec, unit int32) (doc, centroid, coverage float64) {
	dots := map[int32]float64{}
	covered := 0.0
	for i, id := range q.terms {
		in := false
		for _, p := range ix.postings[id] {
			if ix.docs[p.doc].unit == unit {
				dots[p.doc] += p.w * q.w[i]
				in = true
			}
		}
		for _, p := range ix.centroids[id] {
			if p.doc == unit {
				centroid += p.w * q.w[i]
			}
		}
		if in {
			covered += q.w[i] * q.w[i]
		}
	}
	for d, dot := range dots {
		doc = max(doc, dot*ix.docs[d].weight)
	}
	if q.norm == 0 {
		return 0, 0, 0
	}
	return doc / q.norm, centroid / q.norm, covered / (q.norm * q.norm)
}

// centroidShare is the centroid's part in an entry's score. It and the other weights above were chosen on the
// evaluation set (top-1 accuracy and few confident wrong answers), then checked on the held-out set.
const centroidShare = 0.6

// Explain describes how the matcher read a question: the reply language, the terms it kept in each language (with
// their weights, typo corrections included), the request for a person, and the best entries. It is for people
// tuning the knowledge base.
func (m *Matcher) Explain(question string, hint Hint, k int) string {
	var b strings.Builder
	res, r := m.match(question, hint)
	fmt.Fprintf(&b, "language: %s\n", res.Lang)
	for li, ix := range m.indexes {
		if li >= len(r.queries) { // small talk, recognised before the indexes are asked
			break
		}
		fmt.Fprintf(&b, "%s:", Langs[li])
		for _, t := range ix.read(r.queries[li]) {
			fmt.Fprintf(&b, " %s=%.2f", t.term, t.w)
		}
		fmt.Fprintf(&b, "  (length %.2f)\n", r.queries[li].norm)
	}
	fmt.Fprintf(&b, "request for a person: %.3f (request words: %v)\n", r.handoff, r.asks)
	for _, s := range r.ranked[:min(k, len(r.ranked))] {
		fmt.Fprintf(&b, "%.3f %s\n", s.Score, s.Entry.ID)
	}
	return b.String()
}

type readTerm struct {
	term string
	w    float64
}

// read names the terms of a query vector, in its order.
func (ix *index) read(q queryVec) []readTerm {
	names := make(map[int32]string, len(q.terms))
	for term, id := range ix.terms {
		if slices.Contains(q.terms, id) {
			names[id] = term
		}
	}
	out := make([]readTerm, len(q.terms))
	for i, id := range q.terms {
		out[i] = readTerm{names[id], q.w[i]}
	}
	return out
}

// Alternatives returns the likely entries for question other than the one already shown, for a person who said
// the answer did not help: up to MaxSuggestions that reach the suggestion threshold.
func (m *Matcher) Alternatives(question string, lang Lang, shown string) []Scored {
	r := m.rank(question, foldPhrase(question), lang, -1)
	others := slices.DeleteFunc(r.ranked, func(s Scored) bool { return s.Entry.ID == shown })
	return m.suggestions(others)
}
