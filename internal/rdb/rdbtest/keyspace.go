package rdbtest

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
)

// A key pattern of rdb.Keyspace is read as a sequence of atoms: a literal byte, or a placeholder standing for one
// or more bytes of its class.
type atom struct {
	lit   byte
	class string // "", or n (digits, a leading minus), hex, s (anything)
}

func atoms(pattern string) []atom {
	var out []atom
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '<' {
			if end := strings.IndexByte(pattern[i:], '>'); end > 0 {
				out = append(out, atom{class: pattern[i+1 : i+end]})
				i += end
				continue
			}
		}
		out = append(out, atom{lit: pattern[i]})
	}
	return out
}

func inClass(class string, b byte) bool {
	switch class {
	case "n":
		return b >= '0' && b <= '9' || b == '-'
	case "hex":
		return b >= '0' && b <= '9' || b >= 'a' && b <= 'f'
	}
	return true
}

// meet reports whether atoms a and b can consume the same byte.
func meet(a, b atom) bool {
	switch {
	case a.class == "" && b.class == "":
		return a.lit == b.lit
	case a.class == "":
		return inClass(b.class, a.lit)
	case b.class == "":
		return inClass(a.class, b.lit)
	}
	return true // every two classes share a digit
}

// Overlap reports whether some key matches both patterns. Each pattern is an automaton whose state is the number
// of atoms it has finished, and whether it may take one more byte of the placeholder it just finished; the search
// walks both at once, byte by byte, and succeeds when both finish together.
func Overlap(p, q string) bool {
	a, b := atoms(p), atoms(q)
	type state struct {
		i, j   int
		ai, bj bool // inside a placeholder of a (b): it may take more bytes
	}
	type move struct {
		at     atom
		n      int
		inside bool
	}
	// moves lists what one automaton can do from (n, inside) on one byte: the atom it consumes, and where it goes.
	moves := func(x []atom, n int, inside bool) []move {
		var out []move
		if inside {
			out = append(out, move{x[n-1], n, true})
		}
		if n < len(x) {
			out = append(out, move{x[n], n + 1, x[n].class != ""})
		}
		return out
	}
	seen := map[state]bool{}
	todo := []state{{}}
	for len(todo) > 0 {
		s := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if s.i == len(a) && s.j == len(b) && !(s.i == 0 && s.j == 0) {
			return true
		}
		for _, ma := range moves(a, s.i, s.ai) {
			for _, mb := range moves(b, s.j, s.bj) {
				if !meet(ma.at, mb.at) {
					continue
				}
				next := state{ma.n, mb.n, ma.inside, mb.inside}
				if !seen[next] {
					seen[next] = true
					todo = append(todo, next)
				}
			}
		}
	}
	return false
}

// pattern returns a regular expression matching exactly the keys of a pattern.
func pattern(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, a := range atoms(p) {
		switch a.class {
		case "":
			b.WriteString(regexp.QuoteMeta(string(a.lit)))
		case "n":
			b.WriteString("-?[0-9]+")
		case "hex":
			b.WriteString("[0-9a-f]+")
		default:
			b.WriteString("(?s:.+)")
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// CheckKeyspace fails the test for every key in c's database that no pattern of rdb.Keyspace names, or that has
// another type than its pattern declares. It returns how many keys each owner has, for the test to show.
func CheckKeyspace(tb testing.TB, c redis.UniversalClient) map[string]int {
	tb.Helper()
	type decl struct {
		k  rdb.Key
		re *regexp.Regexp
	}
	var decls []decl
	for _, k := range rdb.Keyspace {
		decls = append(decls, decl{k, pattern(k.Pattern)})
	}
	owners := map[string]int{}
	ctx := context.Background()
	err := rdb.Scan(ctx, c, "*", "", func(ctx context.Context, c *redis.Client, key string) error {
		typ, err := c.Type(ctx, key).Result()
		if err != nil {
			return err
		}
		var found []rdb.Key
		for _, d := range decls {
			if d.re.MatchString(key) {
				found = append(found, d.k)
			}
		}
		switch {
		case len(found) == 0:
			tb.Errorf("key %q (%s) is in no pattern of rdb.Keyspace", key, typ)
		case len(found) > 1:
			tb.Errorf("key %q matches %d patterns of rdb.Keyspace: %v", key, len(found), found)
		case found[0].Type != typ:
			tb.Errorf("key %q is a %s; rdb.Keyspace declares %s a %s", key, typ, found[0].Pattern, found[0].Type)
		default:
			owners[found[0].Owner]++
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("scan the keyspace: %v", err)
	}
	return owners
}
