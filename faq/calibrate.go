package faq

import "math"

// TargetPrecision is how often an answer must be right: the answer threshold is the lowest confidence at which
// answers were right this often.
const TargetPrecision = 0.98

// Calibrate searches the thresholds that do best on a labelled set of questions, and returns them.
//
// The human threshold comes first: the lowest that escalates every request for a person while escalating as few
// other questions as possible. The answer threshold is the lowest confidence at which the set's answers are right
// TargetPrecision of the time; on the sets the shipped model was trained on (`make model`) that is in-sample and
// optimistic, so calibrate on new questions. The suggestion threshold is then chosen by a grid search that values a
// right answer at 1 and a suggestion list holding the right entry at 0.4, and costs a wrong answer 1.5, an answered
// out-of-scope question 2 and suggestions for one 0.2.
func Calibrate(m *Matcher, cases []Case) Config {
	type item struct {
		c    Case
		r    ranking
		lang Lang
	}
	var items []item
	for _, c := range cases {
		res, r := m.match(c.Question, Hint{})
		if r.from == nil { // small talk, decided before any threshold
			continue
		}
		items = append(items, item{c, r, res.Lang})
	}

	cfg := m.cfg
	bestCost := math.Inf(1)
	for h := 0.20; h <= 0.95; h += 0.01 {
		cost := 0.0
		for _, it := range items {
			human := !it.r.empty && (it.r.asks || it.r.handoff >= h)
			switch {
			case it.c.Expect == ExpectHuman && !human:
				cost += 10
			case it.c.Expect != ExpectHuman && human:
				cost++
			}
		}
		if cost < bestCost {
			bestCost, cfg.Human = cost, round2(h)
		}
	}

	var p []float64
	var ys []bool
	withHuman := m.WithConfig(cfg)
	for _, it := range items {
		if x, right, ok := withHuman.confidenceExample(it.c, it.lang, it.r); ok {
			p, ys = append(p, confidence(modelWeights, x)), append(ys, right)
		}
	}
	cfg.Answer, _ = lowestThreshold(p, ys, TargetPrecision)

	bestScore := math.Inf(-1)
	for s := 0.10; s <= 0.50; s += 0.01 {
		try := cfg
		try.Suggest = round2(s)
		mm := m.WithConfig(try)
		score := 0.0
		for _, it := range items {
			res := Result{Lang: it.lang}
			mm.decide(it.r, &res)
			score += utility(it.c, res)
		}
		if score > bestScore {
			bestScore, cfg = score, try
		}
	}
	return cfg
}

func utility(c Case, res Result) float64 {
	switch {
	case c.Expect == ExpectHuman:
		return 0 // settled by the human threshold
	case res.Decision == Answer && c.Kind == KindOutOfScope:
		if res.Entry.Scoped() {
			return -2
		}
		return 1 // declined with a refusal entry
	case res.Decision == Answer && res.Entry.ID == c.Expect:
		return 1
	case res.Decision == Answer:
		return -1.5
	case c.Kind == KindOutOfScope && res.Decision == Suggest:
		return -0.2 // a menu of unrelated entries helps nobody
	case res.Decision == Suggest:
		for _, s := range res.Suggestions {
			if s.Entry.ID == c.Expect {
				return 0.4
			}
		}
	}
	return 0
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
