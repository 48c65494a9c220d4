package campaigns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"csrdesk/faq"
)

// Consent is one entry of a subscriber's consent history: what they did, when, how and to what words. The
// history is kept as proof of consent for as long as the subscriber is, and goes with them when they are erased.
type Consent struct {
	At     time.Time `json:"at"`
	Action string    `json:"action"`           // requested, confirmed, imported, unsubscribed, preferences, bounced, complaint
	Via    string    `json:"via"`              // form, api, chat:telegram, chat:slack, chat:web, import, one-click, link, mail, dsn
	Source string    `json:"source,omitempty"` // which form, chat or file
	Text   string    `json:"text,omitempty"`   // the words they agreed to, or a reason
	Lists  []string  `json:"lists,omitempty"`
	Lang   string    `json:"lang,omitempty"`
}

// Consents returns a subscriber's consent history, oldest first.
func (s *Store) Consents(ctx context.Context, email string) ([]Consent, error) {
	raw, err := s.rdb.LRange(ctx, consentKey(email), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Consent, 0, len(raw))
	for _, r := range raw {
		var c Consent
		if json.Unmarshal([]byte(r), &c) == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// SuppressionHash is what remains of an erased address: enough to recognise it in a later import, not to read it.
func SuppressionHash(email string) string {
	sum := sha256.Sum256([]byte("csrdesk suppression|" + strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

// Subscription is a request to receive mailings, from the subscribe form, the API or a chat.
type Subscription struct {
	Email, Name, Company string
	Language             string
	Lists                []string // public lists; empty for all of them
	Via, Source          string   // as in Consent
	Text                 string   // the consent text shown to them, in their language
}

// ErrBlocked is returned for an address that may not subscribe (blocklisted). Callers answer as if it worked, so
// that the form does not tell strangers which addresses are blocked.
var ErrBlocked = errors.New("blocked")

// RequestSubscription records a subscription waiting for its confirmation: a new address is stored unconfirmed
// (it receives nothing) and put on the lists; an existing one is left as it is until it confirms. It returns the
// subscriber, for the confirmation mail, and the lists to confirm.
func (s *Store) RequestSubscription(ctx context.Context, req Subscription) (*Subscriber, []string, error) {
	email, err := NormalizeEmail(req.Email)
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe: %w: %v", ErrInvalid, err)
	}
	lists, err := s.publicListNames(ctx, req.Lists)
	if err != nil {
		return nil, nil, err
	}
	lang := ""
	if l, ok := faq.ParseLang(req.Language); ok {
		lang = string(l)
	}
	if len(req.Name) > 200 || len(req.Company) > 200 {
		return nil, nil, fmt.Errorf("subscribe: %w: name or company longer than 200 characters", ErrInvalid)
	}
	if !utf8.ValidString(req.Name) || !utf8.ValidString(req.Company) {
		return nil, nil, fmt.Errorf("subscribe: %w: name or company is not valid UTF-8", ErrInvalid)
	}
	consent := Consent{Action: "requested", Via: req.Via, Source: req.Source, Text: req.Text, Lists: lists, Lang: lang}
	existing, err := s.Subscriber(ctx, email)
	switch {
	case errors.Is(err, ErrNotFound):
		// Stored unconfirmed on the first list, so that staff see who is waiting; the others are joined on
		// confirmation, as for an existing subscriber.
		sub := &Subscriber{Email: email, Name: strings.TrimSpace(req.Name), Company: strings.TrimSpace(req.Company), Language: lang, Attrs: map[string]string{}}
		if _, err := s.save(ctx, lists[0], []*Subscriber{sub}, false, consent); err != nil {
			return nil, nil, err
		}
		sub, err = s.Subscriber(ctx, email)
		return sub, lists, err
	case err != nil:
		return nil, nil, err
	case existing.Status == Blocklisted:
		return existing, nil, ErrBlocked
	}
	if existing.Language == "" && lang != "" {
		existing.Language = lang // for the confirmation mail only
	}
	return existing, lists, s.addConsent(ctx, email, consent)
}

// publicListNames checks that the names are public lists; none means every public list.
func (s *Store) publicListNames(ctx context.Context, names []string) ([]string, error) {
	public, err := s.PublicLists(ctx)
	if err != nil {
		return nil, err
	}
	var all []string
	for _, l := range public {
		all = append(all, l.Name)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("subscribe: %w: no list is open to subscription (make one with: csrdesk lists create NAME --public)", ErrNotFound)
	}
	if len(names) == 0 {
		return all, nil
	}
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("subscribe: list %q: %w", n, ErrNotFound)
		}
	}
	return names, nil
}

// ConfirmSubscription makes a subscriber active on the lists they asked for, when they follow the link in the
// confirmation mail. Coming back this way also lifts an earlier erasure's suppression.
func (s *Store) ConfirmSubscription(ctx context.Context, email string, lists []string, via string) (*Subscriber, error) {
	sub, err := s.Subscriber(ctx, email)
	if err != nil {
		return nil, err
	}
	if sub.Status == Blocklisted {
		return sub, ErrBlocked
	}
	now := s.now().UTC()
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, subKey(email), "status", Active)
	for _, l := range lists {
		if s.listExists(ctx, l) == nil {
			pipe.ZAddNX(ctx, membersKey(l), redis.Z{Score: float64(now.UnixMilli()), Member: email})
		}
	}
	pipe.SRem(ctx, suppressedKey, SuppressionHash(email))
	rec, _ := json.Marshal(Consent{At: now, Action: "confirmed", Via: via, Lists: lists})
	pipe.RPush(ctx, consentKey(email), rec)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("confirm: %w", err)
	}
	sub.Status = Active
	return sub, nil
}

// Unsubscribe stops all mailings to a subscriber at once. It is idempotent; a bounced or blocklisted address keeps
// that status, which also stops mailings.
func (s *Store) Unsubscribe(ctx context.Context, email, via, reason string) (*Subscriber, error) {
	sub, err := s.Subscriber(ctx, email)
	if err != nil {
		return nil, err
	}
	if sub.Status == Active || sub.Status == Unconfirmed {
		if err := s.rdb.HSet(ctx, subKey(sub.Email), "status", Unsubscribed).Err(); err != nil {
			return nil, err
		}
		sub.Status = Unsubscribed
		action := "unsubscribed"
		if via == "complaint" {
			action = "complaint"
		}
		if err := s.addConsent(ctx, sub.Email, Consent{Action: action, Via: via, Text: reason}); err != nil {
			return nil, err
		}
	}
	return sub, nil
}

// Preferences is what a subscriber chooses on their preferences page.
type Preferences struct {
	Lists    []string // the public lists to stay on (or join); public lists not named are left
	Language string
}

// SetPreferences applies a subscriber's choices. Choosing at least one list makes an unsubscribed subscriber
// active again: they reached the page through a link sent to their own address.
func (s *Store) SetPreferences(ctx context.Context, email string, p Preferences) (*Subscriber, error) {
	sub, err := s.Subscriber(ctx, email)
	if err != nil {
		return nil, err
	}
	public, err := s.PublicLists(ctx)
	if err != nil {
		return nil, err
	}
	lang := ""
	if l, ok := faq.ParseLang(p.Language); ok {
		lang = string(l)
	}
	now := s.now().UTC()
	pipe := s.rdb.TxPipeline()
	var kept []string
	for _, l := range public {
		if slices.Contains(p.Lists, l.Name) {
			kept = append(kept, l.Name)
			pipe.ZAddNX(ctx, membersKey(l.Name), redis.Z{Score: float64(now.UnixMilli()), Member: sub.Email})
		} else {
			pipe.ZRem(ctx, membersKey(l.Name), sub.Email)
		}
	}
	pipe.HSet(ctx, subKey(sub.Email), "language", lang)
	if len(kept) > 0 && (sub.Status == Unsubscribed || sub.Status == Unconfirmed) {
		pipe.HSet(ctx, subKey(sub.Email), "status", Active)
		sub.Status = Active
	}
	rec, _ := json.Marshal(Consent{At: now, Action: "preferences", Via: "link", Lists: kept, Lang: lang})
	pipe.RPush(ctx, consentKey(sub.Email), rec)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("preferences: %w", err)
	}
	sub.Language = lang
	return sub, nil
}

// ListsOf returns the names of the lists a subscriber is on.
func (s *Store) ListsOf(ctx context.Context, email string) ([]string, error) {
	all, err := s.rdb.HKeys(ctx, listsKey).Result()
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(slices.Values(all))
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.FloatCmd, len(names))
	for i, l := range names {
		cmds[i] = pipe.ZScore(ctx, membersKey(l), email)
	}
	if len(names) > 0 {
		pipe.Exec(ctx)
	}
	var out []string
	for i, c := range cmds {
		if c.Err() == nil {
			out = append(out, names[i])
		}
	}
	return out, nil
}

func (s *Store) addConsent(ctx context.Context, email string, c Consent) error {
	c.At = s.now().UTC()
	rec, _ := json.Marshal(c)
	return s.rdb.RPush(ctx, consentKey(email), rec).Err()
}
