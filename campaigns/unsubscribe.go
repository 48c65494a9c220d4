package campaigns

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// UnsubscribeToken is the token of a subscriber's unsubscribe links: their id and an HMAC of it with the
// platform's secret, so that nobody can unsubscribe someone else by guessing, and so that no link, web server log
// or mailto subject shows the address. A subscriber stored before subscribers had ids gets the older kind of
// token, the address in base64 and its HMAC; TokenAddress still takes it, so that old mails' links keep working.
func UnsubscribeToken(secret []byte, sub *Subscriber) string {
	if sub.ID == "" {
		return addressToken(secret, sub.Email)
	}
	return idToken(secret, sub.ID)
}

func idToken(secret []byte, id string) string { return id + "~" + sign(secret, "unsubscribe-id|"+id) }

func addressToken(secret []byte, email string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(email)) + "." + sign(secret, "unsubscribe|"+email)
}

// TokenAddress returns the address an unsubscribe token stands for: ErrInvalid for a forged or damaged token,
// ErrNotFound for a subscriber erased since. A token is checked by making it again from what it names.
func (s *Store) TokenAddress(ctx context.Context, secret []byte, token string) (string, error) {
	invalid := fmt.Errorf("unsubscribe token: %w", ErrInvalid)
	if id, _, ok := strings.Cut(token, "~"); ok {
		if !hmac.Equal([]byte(token), []byte(idToken(secret, id))) {
			return "", invalid
		}
		email, err := s.rdb.HGet(ctx, idsKey, id).Result()
		if errors.Is(err, redis.Nil) {
			return "", fmt.Errorf("subscriber %s: %w", id, ErrNotFound)
		}
		return email, err
	}
	enc, _, _ := strings.Cut(token, ".")
	email, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || !hmac.Equal([]byte(token), []byte(addressToken(secret, string(email)))) {
		return "", invalid
	}
	return string(email), nil
}

// sign is the MAC of the links the platform mails (unsubscribe, confirm): HMAC-SHA256 with the secret, cut to 128
// bits, in hex. v starts with what the link is for, so that one kind of token cannot pass for another.
func sign(secret []byte, v string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
