package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"csrdesk/faq"
)

func faqCommand(cfg config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("faq: want check, ask or eval")
	}
	switch args[0] {
	case "check":
		return faqCheck(cfg, args[1:], stdout)
	case "ask":
		return faqAsk(cfg, args[1:], stdout)
	case "eval":
		return faqEval(cfg, args[1:], stdout)
	}
	return usageError(fmt.Sprintf("faq: unknown command %q (want check, ask or eval)", args[0]))
}

// kbFS returns the knowledge base folder dir, or CSRDESK_FAQ_DIR, or the embedded base.
func kbFS(cfg config, dir string) (fs.FS, string, error) {
	if dir == "" {
		dir = cfg.FAQDir
	}
	if dir == "" {
		return faq.Embedded(), "(embedded)", nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, "", fmt.Errorf("knowledge base: %w", err)
	}
	if !st.IsDir() {
		return nil, "", fmt.Errorf("knowledge base: %s is not a folder", dir)
	}
	return os.DirFS(dir), dir, nil
}

// loadMatcher loads and indexes the knowledge base, printing its problems if it is invalid.
func loadMatcher(cfg config, dir string, stdout io.Writer) (*faq.Matcher, error) {
	fsys, name, err := kbFS(cfg, dir)
	if err != nil {
		return nil, err
	}
	b, problems := faq.Load(fsys)
	if b == nil {
		return nil, fmt.Errorf("knowledge base %s is invalid (run csrdesk faq check):\n%w", name, problems)
	}
	return faq.NewMatcher(b, cfg.FAQ), nil
}

func faqCheck(cfg config, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("faq check", flag.ContinueOnError)
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageError("faq check: want at most one folder")
	}
	dir := ""
	if len(pos) == 1 {
		dir = pos[0]
	}
	fsys, name, err := kbFS(cfg, dir)
	if err != nil {
		return err
	}
	b, problems := faq.Load(fsys)
	prefix := ""
	if dir := name; dir != "(embedded)" {
		prefix = dir + string(os.PathSeparator)
	}
	if b != nil {
		problems = append(problems, b.Stale(time.Now())...)
	}
	for _, p := range problems {
		p.File = prefix + p.File
		fmt.Fprintln(stdout, p)
	}
	if b == nil {
		n := 0
		for _, p := range problems {
			if !p.Note {
				n++
			}
		}
		fmt.Fprintf(stdout, "%s: %d problem(s)\n", name, n)
		return exitCode(1)
	}
	n, id, lang := b.FewestPhrasings()
	fmt.Fprintf(stdout, "%s: ok, %d entries in %d topics, %d languages; at least %d phrasings of each entry in each language (fewest: %s in %s)\n",
		name, len(b.Entries), len(b.Topics), len(faq.Langs), n, id, lang)
	return nil
}

// answerJSON is the output of faq ask --json, and the API's answer to a question.
type answerJSON struct {
	Decision    faq.Decision     `json:"decision"`
	Reason      string           `json:"reason,omitempty"`
	Lang        faq.Lang         `json:"lang"`
	Entry       *entryJSON       `json:"entry"`
	Score       float64          `json:"score"`
	Confidence  float64          `json:"confidence"`
	Suggestions []suggestionJSON `json:"suggestions"`
}

type entryJSON struct {
	ID       string   `json:"id"`
	Kind     faq.Kind `json:"kind"`
	Question string   `json:"question"`
	Answer   string   `json:"answer"`
}

type suggestionJSON struct {
	ID       string  `json:"id"`
	Question string  `json:"question"`
	Score    float64 `json:"score"`
}

func toJSON(r faq.Result) answerJSON {
	out := answerJSON{Decision: r.Decision, Reason: r.Reason, Lang: r.Lang, Score: round3(r.Score), Confidence: round3(r.Confidence), Suggestions: []suggestionJSON{}}
	if r.Entry != nil {
		t := r.Entry.In(r.Lang)
		out.Entry = &entryJSON{ID: r.Entry.ID, Kind: r.Entry.Kind, Question: t.Questions[0], Answer: t.Answer}
	}
	for _, s := range r.Suggestions {
		out.Suggestions = append(out.Suggestions, suggestionJSON{ID: s.Entry.ID, Question: s.Entry.In(r.Lang).Questions[0], Score: round3(s.Score)})
	}
	return out
}

func round3(f float64) float64 { return float64(int(f*1000+0.5)) / 1000 }

func faqAsk(cfg config, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("faq ask", flag.ContinueOnError)
	lang := fl.String("lang", "", "language hint (en, de, it, fr, es)")
	asJSON := fl.Bool("json", false, "print the decision as JSON")
	dir := fl.String("dir", "", "knowledge base folder (default CSRDESK_FAQ_DIR or the embedded base)")
	explain := fl.Bool("explain", false, "also show the terms the matcher kept and the five best entries")
	file := fl.String("file", "", "read the question from this file (- for standard input) instead of the arguments")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	question := join(pos)
	switch {
	case *file != "" && len(pos) > 0:
		return usageError("faq ask: want a question or --file, not both")
	case *file != "":
		r := io.Reader(os.Stdin)
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return fmt.Errorf("faq ask: %w", err)
			}
			defer f.Close()
			r = f
		}
		// The matcher reads the first faq.MaxQuery bytes; a little more keeps a cut UTF-8 sequence out of sight.
		data, err := io.ReadAll(io.LimitReader(r, 4*faq.MaxQuery))
		if err != nil {
			return fmt.Errorf("faq ask: %s: %w", *file, err)
		}
		question = string(data)
	case len(pos) == 0:
		return usageError(`faq ask: want a question, e.g. csrdesk faq ask "does the CSRD apply to us?"`)
	}
	var hint faq.Lang
	if *lang != "" {
		l, ok := faq.ParseLang(*lang)
		if !ok {
			return usageError(fmt.Sprintf("faq ask: --lang %q: want one of en, de, it, fr, es", *lang))
		}
		hint = l
	}
	m, err := loadMatcher(cfg, *dir, stdout)
	if err != nil {
		return err
	}
	r := m.Match(question, faq.Hint{App: hint})
	if *explain {
		fmt.Fprint(stdout, m.Explain(question, faq.Hint{App: hint}, 5), "\n")
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(toJSON(r))
	}
	switch r.Decision {
	case faq.Answer:
		t := r.Entry.In(r.Lang)
		kind := ""
		if !r.Entry.Scoped() {
			kind = string(r.Entry.Kind) + ", "
		}
		fmt.Fprintf(stdout, "answer (%s%s, score %.2f): %s\n%s\n\n%s\n", kind, r.Lang, r.Score, r.Entry.ID, t.Questions[0], t.Answer)
		if len(r.Suggestions) > 0 {
			fmt.Fprintln(stdout, "\nrelated:")
		}
	case faq.Suggest:
		fmt.Fprintf(stdout, "suggest (%s, best score %.2f): did you mean\n", r.Lang, r.Score)
	case faq.Escalate:
		fmt.Fprintf(stdout, "escalate (%s, %s, score %.2f): hand over to staff\n", r.Lang, r.Reason, r.Score)
	}
	for _, s := range r.Suggestions {
		fmt.Fprintf(stdout, "  %-28s %.2f  %s\n", s.Entry.ID, s.Score, s.Entry.In(r.Lang).Questions[0])
	}
	return nil
}

func faqEval(cfg config, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("faq eval", flag.ContinueOnError)
	calibrate := fl.Bool("calibrate", false, "search the thresholds that do best on this set and print them")
	dir := fl.String("dir", "", "knowledge base folder (default CSRDESK_FAQ_DIR or the embedded base)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("faq eval: want one evaluation file (lang<TAB>expect<TAB>question lines)")
	}
	m, err := loadMatcher(cfg, *dir, stdout)
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("faq eval: %w", err)
	}
	defer f.Close()
	cases, err := faq.ParseEval(f, pos[0], m.Base())
	if err != nil {
		return err
	}
	if *calibrate {
		best := faq.Calibrate(m, cases)
		fmt.Fprintf(stdout, "calibrated thresholds (set them as CSRDESK_FAQ_CONFIDENCE, _SUGGEST, _HUMAN):\n"+
			"  answer at confidence %.3f  suggest %.2f  human %.2f\n\n", best.Answer, best.Suggest, best.Human)
		m = m.WithConfig(best)
	}
	faq.Evaluate(m, cases).Print(stdout)
	return nil
}
