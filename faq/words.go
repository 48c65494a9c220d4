package faq

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"io"
	"sort"
	"sync"
)

// The words of the five languages, so that typo correction leaves real words alone: "carbonara" is not a typo of
// "carbon", nor "Milan" of "bilan". words/words.txt.gz is made by `make words` from Debian's word lists
// (wbritish-large, wngerman, witalian, wfrench, wspanish) and the base forms of its hunspell dictionaries
// (hunspell-en-us, -de-de, -it, -fr, -es): every word folded like a question, of minFuzzy to maxFuzzy letters,
// sorted, one a line. words/README.md names the lists and their licences.
//
//go:embed words/words.txt.gz
var wordsGz []byte

var (
	wordsOnce  sync.Once
	wordsBlob  []byte   // the sorted list, one word a line
	wordStarts []uint32 // where each word starts in wordsBlob
)

// isWord reports whether w (folded) is a word of one of the five languages. The list is kept as one blob with the
// offsets of its words, searched by bisection: a map of its words would take several times the memory.
func isWord(w string) bool {
	wordsOnce.Do(loadWords)
	if len(w) < minFuzzy || len(w) > maxFuzzy {
		return false
	}
	word := func(i int) string {
		end := len(wordsBlob)
		if i+1 < len(wordStarts) {
			end = int(wordStarts[i+1]) - 1
		}
		return string(wordsBlob[wordStarts[i]:end])
	}
	i := sort.Search(len(wordStarts), func(i int) bool { return word(i) >= w })
	return i < len(wordStarts) && word(i) == w
}

func loadWords() {
	zr, err := gzip.NewReader(bytes.NewReader(wordsGz))
	if err == nil {
		wordsBlob, err = io.ReadAll(zr)
	}
	if err != nil {
		panic("faq: the embedded word list: " + err.Error()) // built into the binary: cannot fail
	}
	wordsBlob = bytes.TrimSuffix(wordsBlob, []byte("\n"))
	wordStarts = append(wordStarts, 0)
	for i, c := range wordsBlob {
		if c == '\n' {
			wordStarts = append(wordStarts, uint32(i+1))
		}
	}
}
