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

var makeWords = flag.Bool("words", false, "rebuild words/words.txt.gz from Debian's word lists and hunspell dictionaries")

// The sources of words/words.txt.gz: Debian's word lists (packages wbritish-large, wngerman, witalian, wfrench,
// wspanish) and the words of its hunspell dictionaries without their affixes (hunspell-en-us, -de-de, -it, -fr, -es).
var wordSources = []string{
	"/usr/share/dict/british-english-large", "/usr/share/dict/ngerman", "/usr/share/dict/italian",
	"/usr/share/dict/french", "/usr/share/dict/spanish",
	"/usr/share/hunspell/en_US.dic", "/usr/share/hunspell/de_DE.dic", "/usr/share/hunspell/it_IT.dic",
	"/usr/share/hunspell/fr.dic", "/usr/share/hunspell/es_ES.dic",
}

// TestWordList rebuilds the word list with -words (`make words`), and checks the embedded one either way.
func TestWordList(t *testing.T) {
	if *makeWords {
		set := map[string]bool{}
		for _, name := range wordSources {
			f, err := os.Open(name)
			if err != nil {
				t.Fatalf("%v (apt-get install wbritish-large wngerman witalian wfrench wspanish hunspell-en-us hunspell-de-de hunspell-it hunspell-fr hunspell-es)", err)
			}
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
			f.Close()
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
		if err := os.WriteFile("words/words.txt.gz", buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("words/words.txt.gz: %d words, %d bytes", len(words), buf.Len())
		wordsGz = buf.Bytes()
	}
	for _, w := range []string{"weather", "lathes", "carbonaro", "ricetta", "bilan", "nachhaltigkeit", "sostenibilita", "ahorro"} {
		if !isWord(w) {
			t.Errorf("isWord(%q) = false", w)
		}
	}
	for _, w := range []string{"sustainibility", "nachaltigkeit", "emisions", "zzzzz", "", "a", "aaaaa"} {
		if isWord(w) {
			t.Errorf("isWord(%q) = true", w)
		}
	}
	if !slices.IsSorted(strings.Split(string(wordsBlob), "\n")) {
		t.Error("words/words.txt.gz is not sorted")
	}
}
