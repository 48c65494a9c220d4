package faq

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
)

var makeWords = flag.Bool("words", false, "rebuild words/*.txt.gz from Debian's word lists and hunspell dictionaries")

// The sources of words/LANG.txt.gz: Debian's word lists (packages wbritish-large, wngerman, witalian, wfrench,
// wspanish) and the words of its hunspell dictionaries without their affixes (hunspell-en-us, -de-de, -it, -fr, -es).
var wordSources = map[Lang][]string{
	"en": {"/usr/share/dict/british-english-large", "/usr/share/hunspell/en_US.dic"},
	"de": {"/usr/share/dict/ngerman", "/usr/share/hunspell/de_DE.dic"},
	"it": {"/usr/share/dict/italian", "/usr/share/hunspell/it_IT.dic"},
	"fr": {"/usr/share/dict/french", "/usr/share/hunspell/fr.dic"},
	"es": {"/usr/share/dict/spanish", "/usr/share/hunspell/es_ES.dic"},
}

// TestWordList rebuilds the word list with -words (`make words`), and checks the embedded one either way.
func TestWordList(t *testing.T) {
	lists := loadWordLists()
	if *makeWords {
		for li, lang := range Langs {
			set := map[string]bool{}
			for _, name := range wordSources[lang] {
				readWordSource(t, name, set)
			}
			words := make([]string, 0, len(set))
			for w := range set {
				words = append(words, w)
			}
			slices.Sort(words)
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write([]byte(strings.Join(words, "\n") + "\n"))
			zw.Close()
			name := "words/" + string(lang) + ".txt.gz"
			if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d words, %d bytes", name, len(words), buf.Len())
			wl, err := parseWordList(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			lists[li] = wl
		}
	}
	has := func(w string) bool {
		for _, wl := range lists {
			if wl.has(w) {
				return true
			}
		}
		return false
	}
	for _, w := range []string{"weather", "lathes", "carbonaro", "ricetta", "bilan", "nachhaltigkeit", "sostenibilita", "ahorro"} {
		if !has(w) {
			t.Errorf("%q is not in the word lists", w)
		}
	}
	for _, w := range []string{"sustainibility", "nachaltigkeit", "emisions", "zzzzz", "aaaaa"} {
		if has(w) {
			t.Errorf("%q is in the word lists", w)
		}
	}
	if !lists[slices.Index(Langs, "fr")].has("donne") || lists[slices.Index(Langs, "es")].has("donne") {
		t.Error(`"donne" is French (and Italian), not Spanish`)
	}
	if isWordIn("donne", -1) || isWordIn("donne", len(Langs)) {
		t.Error("isWordIn answers for a language outside Langs")
	}
	for li, wl := range lists {
		if !slices.IsSorted(strings.Split(string(wl.blob), "\n")) {
			t.Errorf("words/%s.txt.gz is not sorted", Langs[li])
		}
	}
}

func readWordSource(t *testing.T, name string, set map[string]bool) {
	f, err := os.Open(name)
	if err != nil {
		t.Fatalf("%v (apt-get install wbritish-large wngerman witalian wfrench wspanish hunspell-en-us hunspell-de-de hunspell-it hunspell-fr hunspell-es)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	first := strings.HasSuffix(name, ".dic") // a hunspell .dic starts with its word count
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		w, _, _ := strings.Cut(sc.Text(), "/") // hunspell: word/FLAGS
		if strings.ContainsAny(w, " '") {
			continue
		}
		if fw := foldPhrase(w); !strings.Contains(fw, " ") && len(fw) >= minFuzzy && len(fw) <= maxFuzzy {
			set[fw] = true
		}
	}
}
