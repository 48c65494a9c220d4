package faq

import (
	"cmp"
	"math"
	"slices"
)

// features describes how well the best-ranked entry explains a question, for the confidence model: the first
// stage's score and margin, the best phrasing's and the phrasings' centroid's similarities, how much of the
// question the entry's texts contain, how much of it no entry knows, the best entry of the other kind (an
// out-of-scope entry against an answer, and the reverse), the question's length, whether the entry matched in the
// reply language, and how many entries come close to it ("reporting" fits a dozen).
func (m *Matcher) features(r ranking, lang Lang) []float64 {
	if len(r.ranked) == 0 || r.from == nil {
		return nil
	}
	top := r.ranked[0]
	unit := int32(slices.Index(m.base.Entries, top.Entry))
	li := r.from[unit]
	q := r.queries[li]
	doc, centroid, coverage := m.indexes[li].detail(q, unit)
	known := 0.0
	for _, w := range q.w {
		known += w * w
	}
	unknown := 0.0
	if q.norm > 0 {
		unknown = 1 - known/(q.norm*q.norm)
	}
	s2, other := 0.0, 0.0
	if len(r.ranked) > 1 {
		s2 = r.ranked[1].Score
	}
	for _, s := range r.ranked[1:] {
		if s.Entry.Scoped() != top.Entry.Scoped() {
			other = s.Score
			break
		}
	}
	oos, home := 0.0, 0.0
	if !top.Entry.Scoped() {
		oos = 1
	}
	if Langs[li] == lang {
		home = 1
	}
	near := 0
	for _, s := range r.ranked[1:] {
		if s.Score < 0.8*top.Score {
			break
		}
		near++
	}
	return []float64{1, top.Score, top.Score - s2, doc, centroid, coverage, unknown, other, oos,
		math.Log1p(float64(q.words)), home, math.Log1p(float64(near))}
}

// confidence is the probability, by the logistic model with weights w, that answering with the best-ranked entry
// is right.
func confidence(w, x []float64) float64 {
	z := 0.0
	for i := range min(len(w), len(x)) { // while `make model` retrains for a new feature, the old weights lack it
		z += w[i] * x[i]
	}
	return 1 / (1 + math.Exp(-z))
}

// trainConfidence fits the logistic model's weights to examples (features and whether answering was right) by
// gradient descent with L2 regularisation, in a fixed order and number of steps, so that the same data always
// gives the same weights.
func trainConfidence(xs [][]float64, ys []bool) []float64 {
	if len(xs) == 0 {
		return nil
	}
	w := make([]float64, len(xs[0]))
	const (
		epochs = 2000
		rate   = 0.5
		l2     = 1e-3
	)
	grad := make([]float64, len(w))
	for range epochs {
		clear(grad)
		for i, x := range xs {
			y := 0.0
			if ys[i] {
				y = 1
			}
			g := confidence(w, x) - y
			for j := range x {
				grad[j] += g * x[j]
			}
		}
		for j := range w {
			reg := l2 * w[j]
			if j == 0 {
				reg = 0
			}
			w[j] -= rate * (grad[j]/float64(len(xs)) + reg)
		}
	}
	return w
}

// confidenceExamples turns labelled questions into the confidence model's examples (confidenceExample).
func confidenceExamples(m *Matcher, cases []Case) (xs [][]float64, ys []bool) {
	for _, c := range cases {
		res, r := m.match(c.Question, Hint{})
		if x, right, ok := m.confidenceExample(c, res.Lang, r); ok {
			xs, ys = append(xs, x), append(ys, right)
		}
	}
	return xs, ys
}

// confidenceExample is the confidence model's example for a labelled question the matcher ranked as r: the
// features of the best-ranked entry and whether answering with it is right (the expected entry; for an
// out-of-scope question, any out-of-scope entry). ok is false for what is decided before the model: requests for a
// person (by m's human threshold), questions declined by their words, small talk, empty questions.
func (m *Matcher) confidenceExample(c Case, lang Lang, r ranking) (x []float64, right, ok bool) {
	if c.Expect == ExpectHuman || c.Kind == KindSmallTalk || c.Kind == KindThanks ||
		r.from == nil || r.empty || r.asks || r.refusal != nil || r.handoff >= m.cfg.Human || len(r.ranked) == 0 {
		return nil, false, false
	}
	top := r.ranked[0].Entry
	if top.Kind == KindSmallTalk || top.Kind == KindThanks {
		return nil, false, false
	}
	right = top.ID == c.Expect
	if c.Kind == KindOutOfScope {
		right = top.Kind == KindOutOfScope
	}
	return m.features(r, lang), right, true
}

// answerThreshold returns the lowest confidence at which, on examples the model was not trained on (five folds),
// answers are right at least precision of the time, and the share of the examples it answers.
func answerThreshold(xs [][]float64, ys []bool, precision float64) (threshold, answered float64) {
	const folds = 5
	p := make([]float64, len(xs))
	for k := range folds {
		var tx [][]float64
		var ty []bool
		for i := range xs {
			if i%folds != k {
				tx, ty = append(tx, xs[i]), append(ty, ys[i])
			}
		}
		w := trainConfidence(tx, ty)
		for i := range xs {
			if i%folds == k {
				p[i] = confidence(w, xs[i])
			}
		}
	}
	threshold, n := lowestThreshold(p, ys, precision)
	return threshold, float64(n) / float64(max(len(p), 1))
}

// lowestThreshold returns the lowest of the confidences p at which the examples at or above it are right (ys) at
// least precision of the time, rounded down to a thousandth, and how many examples that is; 1 and 0 when none is.
func lowestThreshold(p []float64, ys []bool, precision float64) (float64, int) {
	order := make([]int, len(p))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(p[b], p[a]) })
	threshold, right, n := 1.0, 0, 0
	for k, i := range order {
		if ys[i] {
			right++
		}
		if float64(right) >= precision*float64(k+1) {
			threshold, n = math.Floor(p[i]*1000)/1000, k+1
		}
	}
	return threshold, n
}
