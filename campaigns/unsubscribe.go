package campaigns

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// UnsubscribeToken is the token of a subscriber's unsubscribe links: the address and an HMAC of it with the
// platform's secret, so that nobody can unsubscribe someone else by guessing, and old mails' links keep working.
func UnsubscribeToken(secret []byte, email string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(email)) + "." + sign(secret, "unsubscribe|"+email)
}

// ParseUnsubscribeToken returns the address a token was made for, and false for a forged or damaged token.
func ParseUnsubscribeToken(secret []byte, token string) (string, bool) {
	enc, mac, ok := strings.Cut(token, ".")
	if !ok {
		return "", false
	}
	email, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	if !hmac.Equal([]byte(mac), []byte(sign(secret, "unsubscribe|"+string(email)))) {
		return "", false
	}
	return string(email), true
}

// sign is the MAC of the links the platform mails (unsubscribe, confirm): HMAC-SHA256 with the secret, cut to 128
// bits, in hex. v starts with what the link is for, so that one kind of token cannot pass for another.
func sign(secret []byte, v string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
