package campaigns

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"csrdesk/internal/smtptest"
)

// dotWriter is what net/textproto (go-mail's DotWriter) sends for data.
func dotWriter(data []byte) string {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	dw := textproto.NewWriter(w).DotWriter()
	dw.Write(data)
	dw.Close()
	w.Flush()
	return b.String()
}

func dotStuffed(data []byte) string {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	dotStuff(w, data)
	w.Flush()
	return b.String()
}

// dotStuff sends what net/textproto's DotWriter sends (for data without a lone CR).
func TestDotStuff(t *testing.T) {
	for _, data := range []string{"", "a", "a\r\n", ".\r\n", "a\r\n.\r\n.b\r\n..\r\n", "bare\nlf\n.x", "a\r\n\r\n", ".", "\n", "\r\n.",
		"Subject: x\r\n\r\n=C3=A4\r\n--=_csrdesk_alt--\r\n"} {
		if got, want := dotStuffed([]byte(data)), dotWriter([]byte(data)); got != want {
			t.Errorf("%q: sent %q, want %q", data, got, want)
		}
	}
}

func FuzzDotStuff(f *testing.F) {
	f.Add([]byte("a\r\n.b\nc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Count(data, []byte("\r")) != bytes.Count(data, []byte("\r\n")) {
			return // a CR alone: the messages csrdesk writes have none, and DotWriter's handling of one is a quirk
		}
		if got, want := dotStuffed(data), dotWriter(data); got != want {
			t.Errorf("%q: sent %q, want %q", data, got, want)
		}
	})
}

// The SMTP transport logs in with the URL's credentials. With a wrong password nothing goes out and nobody is
// failed for it: the server's refusal is not the recipients'.
func TestSMTPAuth(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	sink.RequireAuth("news", "s3cret")
	s, c := startedFixture(t, 20)
	cfg := DefaultWorkerConfig()
	cfg.Conns = 2
	worker := func(url string) *Worker { return urlWorker(t, s, url, cfg) }
	stop := run(t, worker("smtp://news:wrong@"+sink.Addr+"?tls=none"))
	time.Sleep(time.Second)
	stop()
	if st, err := s.CampaignStatus(ctx, c.ID); err != nil || st.Sent != 0 || st.Failed != 0 || st.State != Running {
		t.Fatalf("with a wrong password: %+v %v", st, err)
	}
	run(t, worker("smtp://news:s3cret@"+sink.Addr+"?tls=none"))
	st := waitState(t, s, c.ID, Finished)
	if recipients, messages, dups := sink.Counts(); st.Sent != 20 || recipients != 20 || messages != 20 || len(dups) != 0 {
		t.Errorf("sent %d; the server got %d messages for %d recipients, duplicates %v", st.Sent, messages, recipients, dups)
	}
}

// TestSMTPStartTLS sends over STARTTLS with AUTH, as to a real relay, after trying without TLS. The worker must
// trust the server's certificate, so the test runs again in a child process that trusts it the way a deployment does, through
// SSL_CERT_FILE (Go reads it once per process).
func TestSMTPStartTLS(t *testing.T) {
	certFile, keyFile := os.Getenv("CSRDESK_TEST_CERT"), os.Getenv("CSRDESK_TEST_KEY")
	if certFile == "" {
		certFile, keyFile = selfSigned(t, t.TempDir())
		cmd := exec.Command(os.Args[0], "-test.run=^TestSMTPStartTLS$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+certFile, "CSRDESK_TEST_CERT="+certFile, "CSRDESK_TEST_KEY="+keyFile)
		if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("PASS")) {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sink := smtptest.NewTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	sink.RequireAuth("news", "s3cret")
	s, c := startedFixture(t, 10)
	cfg := DefaultWorkerConfig()
	cfg.Conns, cfg.PauseAfter = 2, 2
	worker := func(url string) *Worker { return urlWorker(t, s, url, cfg) }
	// Without TLS the server refuses MAIL FROM (530): that is not the recipients' doing, so nobody is failed,
	// and the campaign pauses itself.
	stop := run(t, worker("smtp://news:s3cret@"+sink.Addr+"?tls=none"))
	st := waitState(t, s, c.ID, Paused)
	stop()
	if cmp, err := s.Campaign(ctx, c.ID); err != nil || st.Sent != 0 || st.Failed != 0 || st.Retrying != 0 || !strings.Contains(cmp.Reason, "530") {
		t.Fatalf("without TLS: %+v, reason %q %v", st, cmp.Reason, err)
	}
	if _, err := s.Transition(ctx, c.ID, "resume"); err != nil {
		t.Fatal(err)
	}
	run(t, worker("smtp://news:s3cret@"+sink.Addr+"?tls=starttls"))
	st = waitState(t, s, c.ID, Finished)
	if recipients, messages, _ := sink.Counts(); st.Sent != 10 || recipients != 10 || messages != 10 {
		t.Errorf("sent %d; the server got %d messages for %d recipients", st.Sent, messages, recipients)
	}
}

// selfSigned writes a certificate for 127.0.0.1, its own root, and its key, and returns their files.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sink.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}
