package campaigns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Inbound applies what comes back by mail: delivery status notifications and feedback-loop complaints that
// ParseBounce reads, and the unsubscribe mails that the List-Unsubscribe mailto link sends.
type Inbound struct {
	Store       *Store
	Secret      []byte // checks the token of an unsubscribe mail
	HardBounces int    // permanent failures after which an address is marked bounced
}

// Apply reads one message and applies it. It returns one line per change for the operator, and ErrNotBounce for a
// message that is none of the above (the caller leaves it for a person).
func (in *Inbound) Apply(ctx context.Context, r io.Reader) ([]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 10<<20))
	if err != nil {
		return nil, err
	}
	bounces, err := ParseBounce(bytes.NewReader(data))
	if errors.Is(err, ErrNotBounce) {
		if line, ok, err := in.unsubscribeMail(ctx, data); ok || err != nil {
			return []string{line}, err
		}
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, b := range bounces {
		line, err := in.apply(ctx, b)
		if err != nil {
			return out, err
		}
		out = append(out, line)
	}
	return out, nil
}

// unsubscribeMail handles a mail sent through the List-Unsubscribe mailto link: subject "unsubscribe <token>".
func (in *Inbound) unsubscribeMail(ctx context.Context, data []byte) (string, bool, error) {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return "", false, nil
	}
	subject := strings.Fields(m.Header.Get("Subject"))
	if len(subject) != 2 || !strings.EqualFold(subject[0], "unsubscribe") {
		return "", false, nil
	}
	email, err := in.Store.TokenAddress(ctx, in.Secret, subject[1])
	if errors.Is(err, ErrInvalid) {
		return "unsubscribe mail with a forged or damaged token: ignored", true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return "unsubscribe mail for no such subscriber (erased?): ignored", true, nil
	}
	if err != nil {
		return "", true, err
	}
	if _, err := in.Store.Unsubscribe(ctx, email, "mail", ""); err != nil && !errors.Is(err, ErrNotFound) {
		return "", true, err
	}
	return "unsubscribed by mail: " + email, true, nil
}

// apply records one bounce or complaint against the subscriber whose VERP id it carries.
func (in *Inbound) apply(ctx context.Context, b Bounce) (string, error) {
	s := in.Store
	// Only the subscriber id in our return path says whose mail bounced: it cannot be guessed, while anybody can
	// send a report naming any address. A report without it changes nothing.
	if b.Subscriber == "" {
		return fmt.Sprintf("%s for %q without our return path: ignored", b.Kind, b.Recipient), nil
	}
	email, err := s.rdb.HGet(ctx, idsKey, b.Subscriber).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", err
	}
	sub, err := s.Subscriber(ctx, email)
	if email == "" || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
		return fmt.Sprintf("%s for subscriber %s: no such subscriber (erased?): ignored", b.Kind, b.Subscriber), nil
	}
	if err != nil {
		return "", err
	}
	email = sub.Email
	if b.Kind == "complaint" {
		if _, err := s.Unsubscribe(ctx, email, "complaint", b.Reason); err != nil {
			return "", err
		}
		return fmt.Sprintf("complaint from %s (campaign %d): unsubscribed", email, b.Campaign), nil
	}
	if b.Kind == "soft" {
		s.rdb.HIncrBy(ctx, subKey(email), "soft_bounces", 1)
		return fmt.Sprintf("soft bounce for %s (campaign %d, %s): counted, nothing changed", email, b.Campaign, b.Status), nil
	}
	if b.Campaign > 0 {
		failure, _ := json.Marshal(Failure{Email: email, Code: 550, Reason: "bounced after delivery: " + b.Reason, At: s.now().UTC()})
		k := campaignKeys(b.Campaign)
		if err := bouncedScript.Run(ctx, s.rdb, []string{k.delivery, k.counts, k.failures}, email, failure).Err(); err != nil {
			return "", err
		}
	}
	n, err := s.rdb.HIncrBy(ctx, subKey(email), "hard_bounces", 1).Result()
	if err != nil {
		return "", err
	}
	// A mailbox that does not exist (x.1.x: bad address) will not come back; other permanent failures (a full
	// mailbox, a policy refusal) mark the address only when they repeat.
	status := sub.Status
	if sub.Status == Active && (strings.HasPrefix(b.Status, "5.1.") || n >= int64(in.HardBounces)) {
		if err := s.rdb.HSet(ctx, subKey(email), "status", Bounced).Err(); err != nil {
			return "", err
		}
		status = Bounced
		s.addConsent(ctx, email, Consent{Action: "bounced", Via: "dsn", Text: b.Status + " " + b.Reason})
	}
	return fmt.Sprintf("hard bounce for %s (campaign %d, %s, %d so far): %s", email, b.Campaign, b.Status, n, status), nil
}

// bouncedScript turns a sent recipient's record into a failure when their mail bounced after the server took it.
var bouncedScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'sent' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'failed')
redis.call('HINCRBY', KEYS[2], 'sent', -1)
redis.call('HINCRBY', KEYS[2], 'failed', 1)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1`)
