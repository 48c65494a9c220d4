package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/go-redis/redis_rate/v10"
	"github.com/yuin/goldmark"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"csrdesk/bot"
)

// The staff inbox: pages behind a login, sessions in signed cookies, a CSRF token on every form.

const (
	sessionCookie = "csrdesk_staff"
	csrfCookie    = "csrdesk_csrf"
	sessionTTL    = 12 * time.Hour
)

// StaffEnabled reports whether any way to log in is configured.
func (s *Server) StaffEnabled() bool { return s.cfg.StaffToken != "" || len(s.cfg.StaffUsers) > 0 }

func (s *Server) registerStaff(mux *http.ServeMux) {
	mux.HandleFunc("GET /staff/login", s.loginPage)
	mux.HandleFunc("POST /staff/login", s.login)
	mux.HandleFunc("POST /staff/logout", s.staffOnly(s.logout))
	mux.HandleFunc("GET /staff", s.staffOnly(s.inbox))
	mux.HandleFunc("GET /staff/tickets/{id}", s.staffOnly(s.ticketPage))
	mux.HandleFunc("POST /staff/tickets/{id}/{action}", s.staffOnly(s.ticketAction))
	mux.HandleFunc("GET /staff/events", s.staffOnly(s.staffEvents))
}

func (s *Server) sign(v string) string {
	m := hmac.New(sha256.New, s.cfg.Secret)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

// sessionValue is "name|expiry|signature", the name base64-encoded so that it may hold any character.
func (s *Server) sessionValue(name string, expires time.Time) string {
	v := base64.RawURLEncoding.EncodeToString([]byte(name)) + "|" + strconv.FormatInt(expires.Unix(), 10)
	return v + "|" + s.sign("session|"+v)
}

// staffName returns the logged-in staff member, or "".
func (s *Server) staffName(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	parts := strings.Split(c.Value, "|")
	if len(parts) != 3 {
		return ""
	}
	v := parts[0] + "|" + parts[1]
	if !hmac.Equal([]byte(s.sign("session|"+v)), []byte(parts[2])) {
		return ""
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return ""
	}
	name, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return ""
	}
	return string(name)
}

type staffHandler func(w http.ResponseWriter, r *http.Request, staff string)

// staffOnly sends people who are not logged in to the login page, and checks the CSRF token of every POST.
func (s *Server) staffOnly(h staffHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		staff := s.staffName(r)
		if staff == "" {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/staff/login", http.StatusSeeOther)
			} else {
				http.Error(w, "log in first", http.StatusUnauthorized)
			}
			return
		}
		if r.Method == http.MethodPost && !s.csrfOK(r) {
			http.Error(w, "the form expired or came from another site: reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r, staff)
	}
}

// csrfToken returns the page's CSRF token: a random value in a cookie that the form repeats (double submit).
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 32 {
		return c.Value
	}
	tok := newID()
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/staff", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: strings.HasPrefix(s.cfg.PublicURL, "https://")})
	return tok
}

func (s *Server) csrfOK(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil {
		return false
	}
	form := r.PostFormValue("csrf")
	return len(form) == 32 && subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) == 1
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.pages.render(w, "login.html", map[string]any{"CSRF": s.csrfToken(w, r), "Enabled": s.StaffEnabled(), "Users": len(s.cfg.StaffUsers) > 0})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if !s.csrfOK(r) {
		http.Error(w, "the form expired: reload the login page and try again", http.StatusForbidden)
		return
	}
	if !s.allow(r, "login", redis_rate.PerMinute(10)) {
		http.Error(w, "too many login attempts from your address; wait a minute", http.StatusTooManyRequests)
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	secret := r.PostFormValue("secret")
	ok := false
	if want, found := s.cfg.StaffUsers[name]; found {
		ok = subtle.ConstantTimeCompare([]byte(want), []byte(secret)) == 1
	} else if s.cfg.StaffToken != "" {
		ok = subtle.ConstantTimeCompare([]byte(s.cfg.StaffToken), []byte(secret)) == 1
	}
	if !ok || name == "" || len(name) > 80 {
		w.WriteHeader(http.StatusUnauthorized)
		s.pages.render(w, "login.html", map[string]any{"CSRF": s.csrfToken(w, r), "Enabled": s.StaffEnabled(), "Users": len(s.cfg.StaffUsers) > 0,
			"Error": "Wrong name or password.", "Name": name})
		return
	}
	exp := time.Now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.sessionValue(name, exp), Path: "/staff", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(s.cfg.PublicURL, "https://")})
	s.log.Info("staff logged in", "staff", name)
	http.Redirect(w, r, "/staff", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, staff string) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/staff", MaxAge: -1})
	http.Redirect(w, r, "/staff/login", http.StatusSeeOther)
}

func (s *Server) inbox(w http.ResponseWriter, r *http.Request, staff string) {
	ctx := r.Context()
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var tickets []*bot.Ticket
	var err error
	if q != "" {
		tickets, err = s.engine.Search(ctx, q, 100)
	} else {
		tickets, err = s.engine.Tickets(ctx, true, 200)
	}
	if err != nil {
		s.log.Error("staff inbox", "err", err)
		http.Error(w, "the tickets cannot be read right now", http.StatusServiceUnavailable)
		return
	}
	s.pages.render(w, "inbox.html", map[string]any{"Staff": staff, "Tickets": tickets, "Query": q, "CSRF": s.csrfToken(w, r), "Now": time.Now()})
}

func ticketID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

func (s *Server) ticketPage(w http.ResponseWriter, r *http.Request, staff string) {
	id, ok := ticketID(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	t, log, err := s.engine.Ticket(r.Context(), id)
	if errors.Is(err, bot.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.log.Error("staff ticket page", "ticket_id", id, "err", err)
		http.Error(w, "the ticket cannot be read right now", http.StatusServiceUnavailable)
		return
	}
	s.pages.render(w, "ticket.html", map[string]any{"Staff": staff, "T": t, "Log": log, "CSRF": s.csrfToken(w, r),
		"Error": r.URL.Query().Get("error"), "Now": time.Now()})
}

func (s *Server) ticketAction(w http.ResponseWriter, r *http.Request, staff string) {
	id, ok := ticketID(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	var err error
	who := bot.Staff{Name: staff, Via: "inbox"}
	switch r.PathValue("action") {
	case "claim":
		err = s.engine.Claim(ctx, id, who)
	case "reply":
		err = s.engine.StaffReply(ctx, id, who, r.PostFormValue("text"))
	case "resolve":
		err = s.engine.Resolve(ctx, id, who)
	default:
		http.NotFound(w, r)
		return
	}
	back := fmt.Sprintf("/staff/tickets/%d", id)
	if err != nil {
		msg := "That did not work: " + err.Error()
		switch {
		case errors.Is(err, bot.ErrNotFound):
			http.NotFound(w, r)
			return
		case errors.Is(err, bot.ErrClosed):
			msg = "This ticket is resolved: the person can no longer be answered here."
		case errors.Is(err, bot.ErrInvalid):
			msg = "Write a message first."
		default:
			s.log.Error("staff action", "ticket_id", id, "action", r.PathValue("action"), "err", err)
		}
		http.Redirect(w, r, back+"?error="+url.QueryEscape(msg), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// staffEvents streams ticket events (opened, message, reply, note, claimed, resolved, reminder) so that open
// staff pages refresh themselves.
func (s *Server) staffEvents(w http.ResponseWriter, r *http.Request, staff string) {
	last, err := s.rdb.XRevRangeN(r.Context(), bot.EventsStream, "+", "-", 1).Result()
	if err != nil {
		http.Error(w, "events unavailable", http.StatusServiceUnavailable)
		return
	}
	after := "0"
	if len(last) > 0 {
		after = last[0].ID // only what happens from now on
	}
	s.stream(w, r, bot.EventsTopic, bot.EventsStream, after, func(id string, v map[string]any) {
		fmt.Fprintf(w, "data: {\"type\":%q,\"ticket\":%q}\n\n", v["type"], v["ticket"])
	})
}

// pages are the HTML templates of the web faces; html/template escapes everything people wrote.
type pages struct {
	t map[string]*template.Template
}

func loadPages(md goldmark.Markdown) (*pages, error) {
	funcs := template.FuncMap{
		"ago": func(now, t time.Time) string {
			if t.IsZero() {
				return ""
			}
			d := now.Sub(t).Round(time.Minute)
			switch {
			case d < time.Minute:
				return "just now"
			case d < time.Hour:
				return fmt.Sprintf("%d min ago", int(d.Minutes()))
			case d < 48*time.Hour:
				return fmt.Sprintf("%d h ago", int(d.Hours()))
			}
			return t.Format("2 Jan 2006")
		},
		"short": func(s string) string { return truncate(s, 120) },
		// md renders what the bot and staff wrote (Markdown) as HTML, raw HTML dropped.
		"md": func(s string) template.HTML {
			var b strings.Builder
			if err := md.Convert([]byte(s), &b); err != nil {
				return template.HTML(template.HTMLEscapeString(s))
			}
			return template.HTML(b.String())
		},
		"when": func(t time.Time) string { return t.Format("2 Jan 15:04") },
	}
	p := &pages{t: map[string]*template.Template{}}
	names, _ := fs.Glob(assets, "assets/pages/*.html")
	for _, n := range names {
		base := n[len("assets/pages/"):]
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(assets, "assets/pages/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web pages: %w", err)
		}
		p.t[base] = t
	}
	return p, nil
}

func (p *pages) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors *")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := p.t[name].ExecuteTemplate(w, "layout", data); err != nil {
		fmt.Fprint(w, "<p>page error</p>")
	}
}

var _ bot.Channel = (*Server)(nil)
