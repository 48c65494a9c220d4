package faq

import "math"

// Calibrate searches the thresholds that do best on a labelled set of questions, and returns them.
//
// The human threshold comes first: the lowest that escalates every request for a person while escalating as few
// other questions as possible. The others are chosen by a grid search that values a right answer at 1, a
// suggestion list holding the right entry at 0.4, and costs a wrong answer 1.5, an answered out-of-scope
// question 2 and suggestions for one 0.2: a wrong answer given with confidence is worse than a question passed to staff.
func Calibrate(m *Matcher, cases []Case) Config {
	type item struct {
		c Case
		r ranking
	}
	items := make([]item, len(cases))
	for i, c := range cases {
		_, r := m.match(c.Question, Hint{})
		items[i] = item{c, r}
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

	bestScore := math.Inf(-1)
	for a := 0.20; a <= 0.90; a += 0.02 {
		for mg := 0.0; mg <= 0.20; mg += 0.01 {
			for s := 0.10; s <= a+1e-9; s += 0.02 {
				try := Config{Answer: round2(a), Margin: round2(mg), Suggest: round2(s), Human: cfg.Human, Lang: m.cfg.Lang}
				mm := m.WithConfig(try)
				score := 0.0
				for _, it := range items {
					var res Result
					mm.decide(it.r, &res)
					score += utility(it.c.Expect, res)
				}
				if score > bestScore {
					bestScore, cfg = score, try
				}
			}
		}
	}
	return cfg
}

func utility(expect string, res Result) float64 {
	switch expect {
	case ExpectHuman:
		return 0 // settled by the human threshold
	case ExpectNone:
		switch res.Decision {
		case Answer:
			return -2
		case Suggest:
			return -0.2 // a menu of unrelated entries helps nobody
		}
		return 0
	}
	switch res.Decision {
	case Answer:
		if res.Entry.ID == expect {
			return 1
		}
		return -1.5
	case Suggest:
		for _, s := range res.Suggestions {
			if s.Entry.ID == expect {
				return 0.4
			}
		}
	}
	return 0
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
