package campaigns

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"log/slog"
	"net/http"
	netmail "net/mail"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wneessen/go-mail"
	"github.com/yuin/goldmark"

	"csrdesk/faq"
	"csrdesk/internal/rdb"
	"csrdesk/templates"
)

// Subscriptions is the subscribers' side of the mailer: the public pages (subscribe, confirm, unsubscribe,
// preferences, data export), the one-click unsubscribe of RFC 8058, the confirmation and data mails, and
// subscription requests from the API and the chats.
type Subscriptions struct {
	store     *Store
	transport Transport
	texts     *templates.Texts
	page      *htmltemplate.Template
	md        goldmark.Markdown
	cfg       SubscriptionsConfig
	log       *slog.Logger
}

// SubscriptionsConfig says where the pages live and who the mails come from.
type SubscriptionsConfig struct {
	PublicURL string // where the pages are reached, e.g. https://platform.example
	From      string // sender of the confirmation and data mails
	Secret    []byte // signs the links
	PerDay    int    // confirmation mails to one address a day, at most
}

// NewSubscriptions loads the pages' texts and template.
func NewSubscriptions(store *Store, t Transport, cfg SubscriptionsConfig, log *slog.Logger) (*Subscriptions, error) {
	texts, err := pageTexts() // loaded once, shared with the event blocks of campaign mails
	if err != nil {
		return nil, err
	}
	page, err := templates.PublicPage()
	if err != nil {
		return nil, err
	}
	if cfg.PerDay == 0 {
		cfg.PerDay = 3
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Subscriptions{store: store, transport: t, texts: texts, page: page, md: goldmark.New(), cfg: cfg, log: log}, nil
}

// Errors of a subscription request that the caller shows to the person.
var (
	ErrTooMany = errors.New("too many confirmation mails to this address today")
	ErrNotSent = errors.New("the confirmation mail could not be sent")
)

// Subscribe records a subscription request and sends the confirmation mail in the subscriber's language. A
// blocklisted address gets no mail and no error, so that nobody learns it is blocked.
func (s *Subscriptions) Subscribe(ctx context.Context, req Subscription) error {
	if req.Text == "" {
		lang, _ := faq.ParseLang(req.Language)
		req.Text = s.texts.Text(string(lang), "consent", nil)
	}
	email, err := NormalizeEmail(req.Email)
	if err != nil {
		return fmt.Errorf("subscribe: %w: %v", ErrInvalid, err)
	}
	// Count before storing anything: a stranger cannot flood someone's mailbox with confirmations.
	if err := s.allow(ctx, email); err != nil {
		return err
	}
	sub, lists, err := s.store.RequestSubscription(ctx, req)
	if errors.Is(err, ErrBlocked) {
		return nil
	}
	if err != nil {
		return err
	}
	conn, err := s.transport.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	return s.sendConfirmation(ctx, conn, sub, lists)
}

// countScript counts in a key that lasts ARGV[1] seconds from its first count. One step: an INCR whose EXPIRE
// failed after it would leave a count that never expires, and the address blocked for good.
var countScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n`)

// allow counts a confirmation mail to an address: at most PerDay a day.
func (s *Subscriptions) allow(ctx context.Context, email string) error {
	key := rdb.SubsPrefix + "confirm-mails:" + SuppressionHash(email)
	n, err := countScript.Run(ctx, s.store.rdb, []string{key}, int((24 * time.Hour).Seconds())).Int64()
	if err != nil {
		return err
	}
	if n > int64(s.cfg.PerDay) {
		return ErrTooMany
	}
	return nil
}

func (s *Subscriptions) sendConfirmation(ctx context.Context, conn Conn, sub *Subscriber, lists []string) error {
	link := s.cfg.PublicURL + "/confirm/" + s.confirmToken(sub.Email, lists)
	if err := s.send(ctx, conn, sub.Email, sub.Language, "mail_confirm", map[string]any{"URL": link, "Email": sub.Email}, nil); err != nil {
		s.log.Error("subscribe: confirmation mail", "err", err)
		return ErrNotSent
	}
	return nil
}

// InviteReport says what Invite did.
type InviteReport struct {
	Sent, Recent, Failed int // mails sent; members asked within the last week; mails that could not be sent
}

// Invite sends the confirmation mail to every unconfirmed member of a list, for example after an import without
// --confirmed, except those asked within the last week. Each request is recorded in their consent history.
func (s *Subscriptions) Invite(ctx context.Context, list string, sent func()) (InviteReport, error) {
	var rep InviteReport
	conn, err := s.transport.Open()
	if err != nil {
		return rep, err
	}
	defer conn.Close()
	err = s.store.Members(ctx, list, func(sub *Subscriber) error {
		if sub.Status != Unconfirmed {
			return nil
		}
		consents, err := s.store.Consents(ctx, sub.Email)
		if err != nil {
			return err
		}
		for _, c := range consents {
			if c.Action == "requested" && time.Since(c.At) < 7*24*time.Hour {
				rep.Recent++
				return nil
			}
		}
		if errors.Is(s.allow(ctx, sub.Email), ErrTooMany) {
			rep.Recent++
			return nil
		}
		lang, _ := faq.ParseLang(sub.Language)
		consent := Consent{Action: "requested", Via: "staff", Source: "invite to list " + list, Text: s.texts.Text(string(lang), "consent", nil),
			Lists: []string{list}, Lang: sub.Language}
		if err := s.store.addConsent(ctx, sub.Email, consent); err != nil {
			return err
		}
		if err := s.sendConfirmation(ctx, conn, sub, []string{list}); err != nil {
			rep.Failed++ // a broken connection dials again for the next one
			return nil
		}
		rep.Sent++
		if sent != nil {
			sent()
		}
		return nil
	})
	return rep, err
}

// SendData mails a subscriber everything held about them, as a JSON attachment.
func (s *Subscriptions) SendData(ctx context.Context, email string) error {
	data, err := s.store.PersonalData(ctx, email)
	if err != nil {
		return err
	}
	js, _ := json.MarshalIndent(data, "", "  ")
	lang := ""
	if data.Subscriber != nil {
		lang = data.Subscriber.Language
	}
	conn, err := s.transport.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	return s.send(ctx, conn, data.Email, lang, "mail_export", map[string]any{"Email": data.Email}, js)
}

// send mails one of the subscription texts (key_subject, key_md) to one address, outside any campaign.
func (s *Subscriptions) send(ctx context.Context, conn Conn, to, lang, key string, data map[string]any, attachment []byte) error {
	body := s.texts.Text(lang, key+"_md", data)
	var html bytes.Buffer
	if err := s.md.Convert([]byte(body), &html); err != nil {
		return err
	}
	from, err := netmail.ParseAddress(s.cfg.From)
	if err != nil {
		return fmt.Errorf("from %q: %w", s.cfg.From, err)
	}
	m := mail.NewMsg()
	m.FromMailAddress(from)
	wire, _, err := wireAddress(to) // the domain in ASCII: a strict server refuses raw UTF-8 in To without SMTPUTF8
	if err != nil {
		return fmt.Errorf("to %q: %w", to, err)
	}
	if err := m.To(wire); err != nil {
		return err
	}
	m.Subject(s.texts.Text(lang, key+"_subject", data))
	m.SetBodyString(mail.TypeTextPlain, body)
	m.AddAlternativeString(mail.TypeTextHTML, "<!doctype html><html><body style=\"font-family:Arial,sans-serif\">"+html.String()+"</body></html>")
	m.SetMessageID()
	m.SetDate()
	m.SetGenHeader("Auto-Submitted", "auto-generated")
	if attachment != nil {
		if err := m.AttachReader("csr-platform-data.json", bytes.NewReader(attachment), mail.WithFileContentType("application/json")); err != nil {
			return err
		}
	}
	var raw bytes.Buffer
	if _, err := m.WriteTo(&raw); err != nil {
		return err
	}
	return conn.Send(ctx, &Message{From: from.Address, To: to, Data: raw.Bytes()})
}

// Tokens of the links in the mails. An unsubscribe token (UnsubscribeToken) names a subscriber and never expires,
// so that old mails keep working; it opens that address's preferences too. A confirmation token names the address
// and the lists asked for, and expires after confirmWithin.
const confirmWithin = 7 * 24 * time.Hour

type confirmation struct {
	Email string   `json:"e"`
	Lists []string `json:"l"`
	At    int64    `json:"t"`
}

func (s *Subscriptions) confirmToken(email string, lists []string) string {
	payload, _ := json.Marshal(confirmation{Email: email, Lists: lists, At: time.Now().Unix()})
	enc := base64.RawURLEncoding.EncodeToString(payload)
	return enc + "." + sign(s.cfg.Secret, "confirm|"+enc)
}

func (s *Subscriptions) parseConfirmToken(token string) (confirmation, bool) {
	var c confirmation
	enc, mac, ok := strings.Cut(token, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(sign(s.cfg.Secret, "confirm|"+enc))) {
		return c, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || json.Unmarshal(raw, &c) != nil || time.Since(time.Unix(c.At, 0)) > confirmWithin {
		return c, false
	}
	return c, true
}

// Handler serves the public pages.
func (s *Subscriptions) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

// Register adds the public pages' routes to mux: /subscribe, /confirm/, /unsubscribe/, /preferences/, /export/
// and /events/.
func (s *Subscriptions) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /subscribe", s.subscribeForm)
	mux.HandleFunc("POST /subscribe", s.subscribePost)
	mux.HandleFunc("GET /confirm/{token}", s.confirmPage)
	mux.HandleFunc("POST /confirm/{token}", s.confirmPost)
	mux.HandleFunc("GET /unsubscribe/{token}", s.managePage)
	mux.HandleFunc("POST /unsubscribe/{token}", s.unsubscribePost)
	mux.HandleFunc("POST /preferences/{token}", s.preferencesPost)
	mux.HandleFunc("POST /export/{token}", s.exportPost)
	mux.HandleFunc("GET /events/{file}", s.eventFile)
}

// eventFile serves an event's calendar file, for the "add to calendar" link of its mails.
func (s *Subscriptions) eventFile(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(r.PathValue("file"), ".ics")
	ev, err := s.store.Event(r.Context(), id)
	if !ok || errors.Is(err, ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.log.Error("event file", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	ics, err := ev.ICS(EventDomain(s.cfg.PublicURL), time.Now())
	if err != nil {
		s.log.Error("event file", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+ev.ID+`.ics"`)
	w.Write(ics)
}

// pageData is what the page template sees.
type pageData struct {
	s                              *Subscriptions
	Page, Lang, Error, CSRF, Token string
	Email, Name, Company           string
	Lists                          []listChoice
	Languages                      []langChoice
	Unsubscribed, Saved, DataSent  bool
	status                         int
}

type listChoice struct {
	Name, Title string
	Checked     bool
}

type langChoice struct {
	Code, Name string
	Selected   bool
}

// T is a text in the page's language.
func (p *pageData) T(key string) string { return p.s.texts.Text(p.Lang, key, p) }

func (s *Subscriptions) render(w http.ResponseWriter, r *http.Request, p *pageData) {
	p.s = s
	if p.CSRF == "" {
		p.CSRF = csrfCookie(w, r, s.cfg.PublicURL)
	}
	for _, l := range templates.Langs {
		p.Languages = append(p.Languages, langChoice{Code: l, Name: faq.Lang(l).Name(), Selected: l == p.Lang})
	}
	var b bytes.Buffer
	if err := s.page.Execute(&b, p); err != nil {
		s.log.Error("public page", "page", p.Page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer") // the URL carries a token
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.status != 0 {
		w.WriteHeader(p.status)
	}
	w.Write(b.Bytes())
}

// pageLang picks the page's language: asked for, the subscriber's, the browser's, English.
func pageLang(r *http.Request, sub string) string {
	if l, ok := faq.ParseLang(r.FormValue("lang")); ok {
		return string(l)
	}
	if sub != "" {
		return sub
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if l, ok := faq.ParseLang(strings.SplitN(tag, "-", 2)[0]); ok {
			return string(l)
		}
	}
	return "en"
}

// The public forms are protected by a double-submit cookie: a random value set with the page, repeated by the form.
const publicCSRFCookie = "csrdesk_pcsrf"

func csrfCookie(w http.ResponseWriter, r *http.Request, publicURL string) string {
	if c, err := r.Cookie(publicCSRFCookie); err == nil && len(c.Value) == 32 {
		return c.Value
	}
	var b [16]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: publicCSRFCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: strings.HasPrefix(publicURL, "https://")})
	return tok
}

func csrfOK(r *http.Request) bool {
	c, err := r.Cookie(publicCSRFCookie)
	form := r.PostFormValue("csrf")
	return err == nil && len(c.Value) == 32 && hmac.Equal([]byte(c.Value), []byte(form))
}

func (s *Subscriptions) publicChoices(ctx context.Context, checked []string) []listChoice {
	lists, err := s.store.PublicLists(ctx)
	if err != nil {
		s.log.Error("public lists", "err", err)
	}
	var out []listChoice
	for _, l := range lists {
		title := l.Title
		if title == "" {
			title = l.Name
		}
		out = append(out, listChoice{Name: l.Name, Title: title, Checked: len(lists) == 1 || slices.Contains(checked, l.Name)})
	}
	return out
}

func (s *Subscriptions) subscribeForm(w http.ResponseWriter, r *http.Request) {
	lang := pageLang(r, "")
	s.render(w, r, &pageData{Page: "subscribe", Lang: lang, Lists: s.publicChoices(r.Context(), r.URL.Query()["list"])})
}

func (s *Subscriptions) subscribePost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	r.ParseForm()
	lang := pageLang(r, "")
	if l, ok := faq.ParseLang(r.PostFormValue("language")); ok {
		lang = string(l)
	}
	p := &pageData{Page: "subscribe", Lang: lang, Email: r.PostFormValue("email"), Name: r.PostFormValue("name"), Company: r.PostFormValue("company"),
		Lists: s.publicChoices(r.Context(), r.PostForm["list"]), status: http.StatusBadRequest}
	switch {
	case !csrfOK(r):
		p.Error = "error_form"
	case r.PostFormValue("consent") != "yes":
		p.Error = "error_consent"
	case len(r.PostForm["list"]) == 0 && len(p.Lists) > 1:
		p.Error = "error_lists"
	}
	if p.Error != "" {
		s.render(w, r, p)
		return
	}
	err := s.Subscribe(r.Context(), Subscription{Email: p.Email, Name: p.Name, Company: p.Company, Language: lang, Lists: r.PostForm["list"],
		Via: "form", Source: "/subscribe", Text: s.texts.Text(lang, "consent", nil)})
	switch {
	case errors.Is(err, ErrInvalid) && strings.Contains(err.Error(), "address"):
		p.Error = "error_email"
	case errors.Is(err, ErrTooMany):
		p.Error, p.status = "error_busy", http.StatusTooManyRequests
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
		p.Error = "error_lists"
	case err != nil:
		if !errors.Is(err, ErrNotSent) {
			s.log.Error("subscribe", "err", err)
		}
		p.Error, p.status = "error_send", http.StatusServiceUnavailable
	}
	if p.Error != "" {
		s.render(w, r, p)
		return
	}
	email, _ := NormalizeEmail(p.Email)
	s.render(w, r, &pageData{Page: "check", Lang: lang, Email: email})
}

func (s *Subscriptions) invalid(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, &pageData{Page: "invalid", Lang: pageLang(r, ""), status: http.StatusBadRequest})
}

// The confirmation link shows a button rather than confirming at once: mail scanners open links too.
func (s *Subscriptions) confirmPage(w http.ResponseWriter, r *http.Request) {
	c, ok := s.parseConfirmToken(r.PathValue("token"))
	if !ok {
		s.invalid(w, r)
		return
	}
	s.render(w, r, &pageData{Page: "confirm", Lang: s.subscriberLang(r, c.Email), Email: c.Email, Token: r.PathValue("token")})
}

func (s *Subscriptions) confirmPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c, ok := s.parseConfirmToken(r.PathValue("token"))
	if !ok {
		s.invalid(w, r)
		return
	}
	lang := s.subscriberLang(r, c.Email)
	if !csrfOK(r) {
		s.render(w, r, &pageData{Page: "confirm", Lang: lang, Email: c.Email, Token: r.PathValue("token"), Error: "error_form", status: http.StatusBadRequest})
		return
	}
	_, err := s.store.ConfirmSubscription(r.Context(), c.Email, c.Lists, "link")
	if errors.Is(err, ErrNotFound) {
		s.render(w, r, &pageData{Page: "unknown", Lang: lang, status: http.StatusNotFound})
		return
	}
	if err != nil && !errors.Is(err, ErrBlocked) {
		s.log.Error("confirm", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	s.render(w, r, &pageData{Page: "confirmed", Lang: lang, Email: c.Email})
}

func (s *Subscriptions) subscriberLang(r *http.Request, email string) string {
	lang := ""
	if sub, err := s.store.Subscriber(r.Context(), email); err == nil {
		lang = sub.Language
	}
	return pageLang(r, lang)
}

// manage is the page behind every mail's unsubscribe link: unsubscribe, preferences and data.
func (s *Subscriptions) manage(w http.ResponseWriter, r *http.Request, p *pageData) {
	email, err := s.store.TokenAddress(r.Context(), s.cfg.Secret, r.PathValue("token"))
	if errors.Is(err, ErrInvalid) {
		s.invalid(w, r)
		return
	}
	var sub *Subscriber
	if err == nil {
		sub, err = s.store.Subscriber(r.Context(), email)
	}
	if errors.Is(err, ErrNotFound) {
		s.render(w, r, &pageData{Page: "unknown", Lang: pageLang(r, ""), status: http.StatusNotFound})
		return
	}
	if err != nil {
		s.log.Error("preferences", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	lists, _ := s.store.ListsOf(r.Context(), email)
	p.Page, p.Email, p.Token = "manage", email, r.PathValue("token")
	if p.Lang == "" {
		p.Lang = pageLang(r, sub.Language)
	}
	p.Unsubscribed = p.Unsubscribed || sub.Status != Active
	p.Lists = s.publicChoices(r.Context(), lists)
	if len(p.Lists) == 1 && !slices.Contains(lists, p.Lists[0].Name) {
		p.Lists[0].Checked = false
	}
	s.render(w, r, p)
}

func (s *Subscriptions) managePage(w http.ResponseWriter, r *http.Request) {
	s.manage(w, r, &pageData{})
}

// unsubscribePost is both the one-click unsubscribe of RFC 8058, which a mail client posts with the body
// "List-Unsubscribe=One-Click" and no cookie, and the button on the page. Either way the token is the proof.
func (s *Subscriptions) unsubscribePost(w http.ResponseWriter, r *http.Request) {
	email, ok := s.tokenPost(w, r, false)
	if !ok {
		return
	}
	oneClick := r.PostFormValue("List-Unsubscribe") == "One-Click"
	if !oneClick && !csrfOK(r) {
		s.manage(w, r, &pageData{Error: "error_form", status: http.StatusBadRequest})
		return
	}
	via := "link"
	if oneClick {
		via = "one-click"
	}
	_, err := s.store.Unsubscribe(r.Context(), email, via, "")
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("unsubscribe", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	s.log.Info("unsubscribed", "via", via)
	if oneClick {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "unsubscribed")
		return
	}
	s.manage(w, r, &pageData{Unsubscribed: true})
}

// tokenPost reads a form posted to a page of an unsubscribe link and returns the link's address. When the token
// is forged or damaged, or (with needCSRF) the form's CSRF token is missing, it answers and returns false.
func (s *Subscriptions) tokenPost(w http.ResponseWriter, r *http.Request, needCSRF bool) (string, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	r.ParseForm()
	email, err := s.store.TokenAddress(r.Context(), s.cfg.Secret, r.PathValue("token"))
	if errors.Is(err, ErrInvalid) {
		s.invalid(w, r)
		return "", false
	}
	if err != nil {
		s.manage(w, r, &pageData{}) // says the subscriber is unknown, or answers the error
		return "", false
	}
	if needCSRF && !csrfOK(r) {
		s.manage(w, r, &pageData{Error: "error_form", status: http.StatusBadRequest})
		return "", false
	}
	return email, true
}

func (s *Subscriptions) preferencesPost(w http.ResponseWriter, r *http.Request) {
	email, ok := s.tokenPost(w, r, true)
	if !ok {
		return
	}
	sub, err := s.store.SetPreferences(r.Context(), email, Preferences{Lists: r.PostForm["list"], Language: r.PostFormValue("language")})
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("preferences", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	p := &pageData{Saved: true}
	if sub != nil {
		p.Lang = pageLang(r, sub.Language)
	}
	s.manage(w, r, p)
}

func (s *Subscriptions) exportPost(w http.ResponseWriter, r *http.Request) {
	email, ok := s.tokenPost(w, r, true)
	if !ok {
		return
	}
	// The data goes to the address itself, never to the browser: a forwarded mail's link must not hand it out.
	if err := s.SendData(r.Context(), email); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("data export", "err", err)
		s.manage(w, r, &pageData{Error: "error_send", status: http.StatusServiceUnavailable})
		return
	}
	s.manage(w, r, &pageData{DataSent: true})
}
