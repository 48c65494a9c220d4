package faq

import (
	"bufio"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkLoadAndIndex measures reading, validating and indexing the shipped five-language base, and the
// memory the matcher holds afterwards (index-bytes: live heap of the Base and its indexes).
func BenchmarkLoadAndIndex(b *testing.B) {
	for b.Loop() {
		base, problems := Load(Embedded())
		if base == nil {
			b.Fatal(problems)
		}
		NewMatcher(base, DefaultConfig())
	}
	b.StopTimer()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	base, _ := Load(Embedded())
	m := NewMatcher(base, DefaultConfig())
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "index-bytes")
	runtime.KeepAlive(m)
}

// BenchmarkMatch measures one decision for the questions of the evaluation set, in turn, and reports the
// latency percentiles besides the mean (ns/op); queries/s on one core is 1e9 / ns/op with -cpu 1.
func BenchmarkMatch(b *testing.B) {
	m := mustMatcher(b)
	qs := evalQuestions(b)
	lat := make([]time.Duration, 0, 1<<16)
	i := 0
	for b.Loop() {
		start := time.Now()
		m.Match(qs[i%len(qs)], Hint{})
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

func evalQuestions(tb testing.TB) []string {
	tb.Helper()
	f, err := os.Open("testdata/eval.tsv")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var qs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Split(sc.Text(), "\t"); len(fields) == 3 && fields[0] != "lang" && !strings.HasPrefix(fields[0], "#") {
			qs = append(qs, fields[2])
		}
	}
	return qs
}

// BenchmarkWordList: loading the embedded word lists, done once per process by the first NewMatcher.
func BenchmarkWordList(b *testing.B) {
	var before, after runtime.MemStats
	var lists [5]wordList
	for b.Loop() {
		lists = [5]wordList{}
		runtime.GC()
		runtime.ReadMemStats(&before)
		lists = loadWordLists()
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "list-bytes")
	n := 0
	for _, wl := range lists {
		n += len(wl.starts)
	}
	b.ReportMetric(float64(n), "words")
}
