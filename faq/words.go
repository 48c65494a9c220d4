package faq

import (
	"bytes"
	"compress/gzip"
	"embed"
	"io"
	"sort"
	"sync"
)

// The words of the five languages, so that typo correction leaves real words alone: "carbonara" is not a typo of
// "carbon", nor "Milan" of "bilan". words/LANG.txt.gz are made by `make words` from Debian's word lists
// (wbritish-large, wngerman, witalian, wfrench, wspanish) and the base forms of its hunspell dictionaries
// (hunspell-en-us, -de-de, -it, -fr, -es): every word folded like a question, of minFuzzy to maxFuzzy letters,
// sorted, one a line. words/README.md names the lists and their licences.
//
//go:embed words/*.txt.gz
var wordFiles embed.FS

// wordList is one language's words: one blob with the offsets of its words, searched by bisection; a map of the
// million words would take several times the memory.
type wordList struct {
	blob   []byte
	starts []uint32
}

var (
	wordsOnce sync.Once
	wordLists [5]wordList // in the order of Langs; loaded by NewMatcher
)

// isWord reports whether w (folded) is a word of one of the five languages.
func isWord(w string) bool {
	for i := range Langs {
		if isWordIn(w, i) {
			return true
		}
	}
	return false
}

// loadWords loads the word lists once per process; NewMatcher calls it, so that no question waits for it.
func loadWords() { wordsOnce.Do(func() { wordLists = loadWordLists() }) }

// isWordIn reports whether w (folded) is a word of the language Langs[li]; false for any li outside Langs.
func isWordIn(w string, li int) bool {
	loadWords()
	if li < 0 || li >= len(wordLists) {
		return false
	}
	return wordLists[li].has(w)
}

// has reports whether w is in the list. It compares in place: a question looks up each of its words in five
// lists, about twenty comparisons each, and copying every word compared would cost more than the search.
func (wl *wordList) has(w string) bool {
	if len(w) < minFuzzy || len(w) > maxFuzzy {
		return false
	}
	word := func(i int) []byte {
		end := len(wl.blob)
		if i+1 < len(wl.starts) {
			end = int(wl.starts[i+1]) - 1
		}
		return wl.blob[wl.starts[i]:end]
	}
	i := sort.Search(len(wl.starts), func(i int) bool { return string(word(i)) >= w })
	return i < len(wl.starts) && string(word(i)) == w
}

// loadWordLists reads the embedded lists, about 70 ms and 18 MB of memory for their million words.
func loadWordLists() [5]wordList {
	var lists [5]wordList
	for li, lang := range Langs {
		name := "words/" + string(lang) + ".txt.gz"
		gz, err := wordFiles.ReadFile(name)
		if err == nil {
			lists[li], err = parseWordList(gz)
		}
		if err != nil {
			panic("faq: the embedded word list " + name + ": " + err.Error()) // built into the binary: cannot fail
		}
	}
	return lists
}

// parseWordList reads a gzipped list of sorted words, one a line.
func parseWordList(gz []byte) (wordList, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return wordList{}, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return wordList{}, err
	}
	wl := wordList{blob: bytes.TrimSuffix(data, []byte("\n")), starts: []uint32{0}}
	for i, c := range wl.blob {
		if c == '\n' {
			wl.starts = append(wl.starts, uint32(i+1))
		}
	}
	return wl, nil
}
