package campaigns

import (
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// A segment narrows a campaign to the subscribers an expression selects (expr-lang syntax), for example
//
//	Country == "DE" && Language in ["de", "en"]
//	Attrs["sector"] == "machine tools" || Role == "purchasing"
type segmentEnv struct {
	Email, Name, Company, Country, Language, Role string
	Attrs                                         map[string]string
}

// compileSegment checks a segment expression; an empty one selects everybody.
func compileSegment(src string) (*vm.Program, error) {
	if src == "" {
		return nil, nil
	}
	p, err := expr.Compile(src, expr.Env(segmentEnv{}), expr.AsBool())
	if err != nil {
		return nil, fmt.Errorf("segment: %w: %v", ErrInvalid, err)
	}
	return p, nil
}

// matches runs a compiled segment on a subscriber.
func matches(p *vm.Program, sub *Subscriber) (bool, error) {
	if p == nil {
		return true, nil
	}
	out, err := expr.Run(p, segmentEnv{Email: sub.Email, Name: sub.Name, Company: sub.Company, Country: sub.Country,
		Language: sub.Language, Role: sub.Role, Attrs: sub.Attrs})
	if err != nil {
		return false, err
	}
	ok, _ := out.(bool)
	return ok, nil
}
