package campaigns

import (
	"fmt"
	"os"

	"github.com/wneessen/go-mail"
)

// DKIM returns a signer for the private key in keyFile (PEM), for domain and selector. It signs From, To,
// Subject, Date, Message-ID, and List-Unsubscribe with List-Unsubscribe-Post, as the mailbox providers'
// bulk-sender rules ask. It leaves out Content-Type and MIME-Version: go-mail v0.8.1 hard-wraps an h= tag
// longer than its line inside a header name, and verifiers then reject the signature (TestDKIM verifies with
// go-msgauth); this list keeps h= on one line whatever the domain.
func DKIM(keyFile, domain, selector string) (*mail.DKIMSigner, error) {
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("DKIM key: %w", err)
	}
	key, err := mail.PrivKeyFromPEM(pem)
	if err != nil {
		return nil, fmt.Errorf("DKIM key %s: %w", keyFile, err)
	}
	s := mail.NewDKIMSigner(domain, selector, key)
	s.SignHeaders("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post")
	if err := s.ValidateConfig(); err != nil {
		return nil, fmt.Errorf("DKIM: %w", err)
	}
	return s, nil
}
