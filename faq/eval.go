package faq

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strings"
)

// Case is one labelled question of an evaluation set.
type Case struct {
	Line     int
	Lang     Lang
	Expect   string // an entry id, ExpectNone or ExpectHuman
	Kind     Kind   // the expected entry's kind; KindOutOfScope for ExpectNone, "" for ExpectHuman
	Question string
}

// Labels for questions that no entry should answer.
const (
	ExpectNone  = "none"  // out of scope: must not be answered
	ExpectHuman = "human" // a request for a person: must escalate
)

// ParseEval reads an evaluation set: a header line, then "lang<TAB>expect<TAB>question" lines; # starts a
// comment. name is used in error messages. Expected entries must exist in b.
func ParseEval(r io.Reader, name string, b *Base) ([]Case, error) {
	var cases []Case
	var errs []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	header := false
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !header {
			header = true
			if line != "lang\texpect\tquestion" {
				errs = append(errs, fmt.Sprintf("%s:%d: the first line must be the header lang<TAB>expect<TAB>question", name, n))
			}
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			errs = append(errs, fmt.Sprintf("%s:%d: want 3 tab-separated fields, got %d", name, n, len(f)))
			continue
		}
		lang, ok := ParseLang(f[0])
		if !ok || string(lang) != f[0] {
			errs = append(errs, fmt.Sprintf("%s:%d: unknown language %q", name, n, f[0]))
			continue
		}
		c := Case{Line: n, Lang: lang, Expect: f[1], Question: f[2]}
		switch e := b.Entry(f[1]); {
		case f[1] == ExpectNone:
			c.Kind = KindOutOfScope
		case f[1] == ExpectHuman:
		case e == nil:
			errs = append(errs, fmt.Sprintf("%s:%d: no entry %q in the knowledge base", name, n, f[1]))
			continue
		default:
			c.Kind = e.Kind
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Sprintf("%s:%d: %v", name, n+1, err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("%s: no questions", name)
	}
	return cases, nil
}

// Outcome is the matcher's result for one case.
type Outcome struct {
	Case
	Got     Result
	Rank    int    // 1-based rank of the expected entry, 0 if it was not ranked
	Top     string // the best-ranked entry, "" if none
	AppLang Lang   // the reply language when the chat app reports the case's language
}

// Correct reports whether the decision is right for the case: the expected entry answered; for an out-of-scope
// question (ExpectNone or an out-of-scope entry), no answer from the help desk's scope; an escalation for a request
// for a person.
func (o Outcome) Correct() bool {
	switch {
	case o.Expect == ExpectHuman:
		return o.Got.Decision == Escalate && o.Got.Reason == ReasonHuman
	case o.Kind == KindOutOfScope:
		return o.Got.Decision != Answer || !o.Got.Entry.Scoped()
	default:
		return o.Got.Decision == Answer && o.Got.Entry.ID == o.Expect && o.Got.Lang == o.Lang
	}
}

// ConfidentlyWrong reports whether the help desk answered from its scope with an entry the case did not expect:
// a wrong answer, an answered out-of-scope question or small talk, or a request for a person that got an answer.
func (o Outcome) ConfidentlyWrong() bool {
	return o.Got.Decision == Answer && o.Got.Entry.Scoped() && o.Got.Entry.ID != o.Expect
}

// declined reports whether an out-of-scope question got the refusal of an out-of-scope entry.
func (o Outcome) declined() bool {
	return o.Got.Decision == Answer && o.Got.Entry.Kind == KindOutOfScope
}

// Report summarises an evaluation.
type Report struct {
	Outcomes []Outcome
	Config   Config
}

// LangStats are the figures for the in-scope questions of one language.
type LangStats struct {
	Lang      Lang
	N         int
	Top1      int     // expected entry ranked first
	RR        float64 // sum of reciprocal ranks
	Answered  int     // answered with the expected entry, in the question's language
	Wrong     int     // answered with another entry
	Suggested int     // expected entry among the suggestions
	Escalated int     // handed to staff
}

// Evaluate runs every case through m. The case's language is not given to the matcher as a hint: chat apps often
// report another language than the one typed.
func Evaluate(m *Matcher, cases []Case) *Report {
	rep := &Report{Config: m.cfg}
	for _, c := range cases {
		res, r := m.match(c.Question, Hint{})
		_, _, appLang, _ := m.readLang(c.Question, foldPhrase(c.Question), Hint{App: c.Lang})
		o := Outcome{Case: c, Got: res, AppLang: appLang}
		if len(r.ranked) > 0 {
			o.Top = r.ranked[0].Entry.ID
		}
		for i, s := range r.ranked {
			if s.Entry.ID == c.Expect {
				o.Rank = i + 1
				break
			}
		}
		rep.Outcomes = append(rep.Outcomes, o)
	}
	return rep
}

// ByLang returns the in-scope figures per language, then the total.
func (rep *Report) ByLang() []LangStats {
	var out []LangStats
	total := LangStats{Lang: "all"}
	for _, lang := range Langs {
		s := LangStats{Lang: lang}
		for _, o := range rep.Outcomes {
			if o.Lang != lang || o.Kind != KindAnswer {
				continue
			}
			s.N++
			if o.Rank == 1 {
				s.Top1++
			}
			if o.Rank > 0 {
				s.RR += 1 / float64(o.Rank)
			}
			switch o.Got.Decision {
			case Answer:
				if o.Correct() {
					s.Answered++
				} else if o.ConfidentlyWrong() {
					s.Wrong++
				}
			case Escalate:
				s.Escalated++
			case Suggest:
				for _, sg := range o.Got.Suggestions {
					if sg.Entry.ID == o.Expect {
						s.Suggested++
					}
				}
			}
		}
		total.N += s.N
		total.Top1 += s.Top1
		total.RR += s.RR
		total.Answered += s.Answered
		total.Wrong += s.Wrong
		total.Suggested += s.Suggested
		total.Escalated += s.Escalated
		out = append(out, s)
	}
	return append(out, total)
}

// Rejection returns how many out-of-scope questions were not answered from the help desk's scope, and how many
// there were.
func (rep *Report) Rejection() (ok, n int) {
	return rep.count(func(o Outcome) bool { return o.Kind == KindOutOfScope }, Outcome.Correct)
}

// Declined returns how many out-of-scope questions got the refusal of an out-of-scope entry rather than a "no
// match", and how many there were.
func (rep *Report) Declined() (ok, n int) {
	return rep.count(func(o Outcome) bool { return o.Kind == KindOutOfScope }, Outcome.declined)
}

// SmallTalk returns how many small-talk messages got the expected small-talk reply, and how many there were.
func (rep *Report) SmallTalk() (ok, n int) {
	return rep.count(func(o Outcome) bool { return o.Kind == KindSmallTalk || o.Kind == KindThanks }, Outcome.Correct)
}

// HumanRecall returns how many requests for a person escalated as such, and how many there were.
func (rep *Report) HumanRecall() (ok, n int) {
	return rep.count(func(o Outcome) bool { return o.Expect == ExpectHuman }, Outcome.Correct)
}

func (rep *Report) count(of, good func(Outcome) bool) (ok, n int) {
	for _, o := range rep.Outcomes {
		if of(o) {
			n++
			if good(o) {
				ok++
			}
		}
	}
	return ok, n
}

// wilson returns the 95% Wilson score interval of the proportion k/n: an evaluation set of 50 questions per
// language tells a 90% matcher from an 80% one only roughly, and the interval says how roughly.
func wilson(k, n int) (lo, hi float64) {
	if n == 0 {
		return 0, 0
	}
	const z = 1.959964
	p, nf := float64(k)/float64(n), float64(n)
	centre := (p + z*z/(2*nf)) / (1 + z*z/nf)
	half := z / (1 + z*z/nf) * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf))
	return max(0, centre-half), min(1, centre+half)
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// Print writes the report as a table, then the confident wrong answers and the other misses.
func (rep *Report) Print(w io.Writer) {
	c := rep.Config
	fmt.Fprintf(w, "thresholds: answer at confidence %.3f  suggest %.2f  human %.2f\n\n", c.Answer, c.Suggest, c.Human)
	fmt.Fprintf(w, "%-4s %4s  %-25s %-25s %-22s %-22s %6s %5s\n", "lang", "n", "answered [95% CI]", "suggested", "wrong", "escalated", "top-1", "MRR")
	for _, s := range rep.ByLang() {
		fmt.Fprintf(w, "%-4s %4d  %-25s %-25s %-22s %-22s %5.1f%% %5.3f\n", s.Lang, s.N, interval(s.Answered, s.N), interval(s.Suggested, s.N),
			interval(s.Wrong, s.N), interval(s.Escalated, s.N), pct(s.Top1, s.N), s.RR/float64(max(s.N, 1)))
	}
	fmt.Fprintf(w, "(in-scope questions. answered: with the expected entry in the question's language; suggested: the expected\n"+
		"entry among the choices offered; wrong: answered with another entry; escalated: handed to staff; [95%% CI]: Wilson\n"+
		"score interval; top-1 and MRR: the expected entry's rank)\n\n")
	wrong, _ := rep.count(func(Outcome) bool { return true }, Outcome.ConfidentlyWrong)
	fmt.Fprintf(w, "confidently wrong, of all %d questions: %s\n", len(rep.Outcomes), interval(wrong, len(rep.Outcomes)))
	own, _ := rep.count(func(Outcome) bool { return true }, func(o Outcome) bool { return o.Got.Lang == o.Lang })
	app, _ := rep.count(func(Outcome) bool { return true }, func(o Outcome) bool { return o.AppLang == o.Lang })
	fmt.Fprintf(w, "reply in the question's language: %s from its words alone; %s with the chat app's language\n",
		interval(own, len(rep.Outcomes)), interval(app, len(rep.Outcomes)))
	for _, line := range []struct {
		what  string
		count func() (int, int)
	}{
		{"out of scope not answered", rep.Rejection},
		{"out of scope declined with a refusal entry", rep.Declined},
		{"small talk replied to", rep.SmallTalk},
		{"requests for a person escalated", rep.HumanRecall},
	} {
		ok, n := line.count()
		fmt.Fprintf(w, "%s: %s\n", line.what, interval(ok, n))
	}
	fmt.Fprintf(w, "\nconfidently wrong (line: lang expected -> answered [score]: question):\n")
	for _, o := range rep.Outcomes {
		if o.ConfidentlyWrong() {
			fmt.Fprintf(w, "  %d: %s %s -> %s [%.2f]: %s\n", o.Line, o.Lang, o.Expect, o.Got.Entry.ID, o.Got.Score, o.Question)
		}
	}
	fmt.Fprintf(w, "\nother misses (line: lang expected -> decision [top entry, score]: question):\n")
	for _, o := range rep.Outcomes {
		if o.Correct() || o.ConfidentlyWrong() {
			continue
		}
		got := string(o.Got.Decision)
		switch {
		case o.Got.Decision == Answer && o.Got.Entry.ID == o.Expect:
			got += " in " + string(o.Got.Lang)
		case o.Got.Decision == Answer:
			got += " " + o.Got.Entry.ID
		case o.Got.Reason != "":
			got += " (" + o.Got.Reason + ")"
		}
		fmt.Fprintf(w, "  %d: %s %s -> %s [%s %.2f]: %s\n", o.Line, o.Lang, o.Expect, got, o.Top, o.Got.Score, o.Question)
	}
}

// interval formats k of n as a percentage with its 95% Wilson interval.
func interval(k, n int) string {
	lo, hi := wilson(k, n)
	return fmt.Sprintf("%d/%d %.1f%% [%.1f-%.1f]", k, n, pct(k, n), 100*lo, 100*hi)
}
