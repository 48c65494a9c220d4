package campaigns

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"csrdesk/templates"
)

// Limits of an import through the API: the body (about 800,000 rows of 250 bytes), and the problems its answer
// lists (all are counted).
const (
	maxImportBody     = 200 << 20
	maxListedProblems = 10000
	importLogEvery    = 50000 // rows between two progress lines in the log
)

// API serves the mailer's operations as JSON over HTTP, for scripts and other tools: the same as the CLI.
// Every request needs "Authorization: Bearer <token>".
type API struct {
	Store     *Store
	Layout    *templates.Mail
	Transport Transport
	Worker    WorkerConfig // the public URL and secret for previews and tests
	Token     string
	Log       *slog.Logger

	Subscriptions *Subscriptions                                // POST /api/subscribe
	Inbound       *Inbound                                      // POST /api/inbound
	OnErase       func(ctx context.Context, email string) error // erases an address from what this package does not hold (chats)
}

// Register adds the API's routes under /api/ to mux.
func (a *API) Register(mux *http.ServeMux) {
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) (any, int, error)) {
		mux.HandleFunc(pattern, a.auth(fn))
	}
	h("GET /api/lists", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		l, err := a.Store.Lists(r.Context())
		return l, http.StatusOK, err
	})
	h("POST /api/lists", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		var in List
		if err := decode(r, &in); err != nil {
			return nil, 0, err
		}
		return map[string]string{"name": in.Name}, http.StatusCreated, a.Store.CreateList(r.Context(), in)
	})
	h("POST /api/subscribe", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		var in struct {
			Email    string   `json:"email"`
			Name     string   `json:"name"`
			Company  string   `json:"company"`
			Language string   `json:"language"`
			Lists    []string `json:"lists"`
			Source   string   `json:"source"`  // the form or app the request comes from, recorded with the consent
			Consent  string   `json:"consent"` // the words the person agreed to; the standard text when empty
		}
		if err := decode(r, &in); err != nil {
			return nil, 0, err
		}
		err := a.Subscriptions.Subscribe(r.Context(), Subscription{Email: in.Email, Name: in.Name, Company: in.Company, Language: in.Language,
			Lists: in.Lists, Via: "api", Source: in.Source, Text: in.Consent})
		return map[string]string{"status": "confirmation sent"}, http.StatusAccepted, err
	})
	// A mail server pipes bounces, complaints and unsubscribe mails here, one raw message per request.
	h("POST /api/inbound", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		lines, err := a.Inbound.Apply(r.Context(), http.MaxBytesReader(w, r.Body, 10<<20))
		if errors.Is(err, ErrNotBounce) {
			return map[string]any{"applied": []string{}, "note": "not a bounce, complaint or unsubscribe mail"}, http.StatusOK, nil
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			err = fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return map[string]any{"applied": lines}, http.StatusOK, err
	})
	h("GET /api/subscribers/{email}", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		data, err := a.Store.PersonalData(r.Context(), r.PathValue("email"))
		return data, http.StatusOK, err
	})
	h("DELETE /api/subscribers/{email}", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		if err := a.Store.Erase(r.Context(), r.PathValue("email")); err != nil {
			return nil, 0, err
		}
		if a.OnErase != nil {
			if err := a.OnErase(r.Context(), r.PathValue("email")); err != nil {
				return nil, 0, err
			}
		}
		return map[string]string{"status": "erased"}, http.StatusOK, nil
	})
	h("POST /api/lists/{name}/subscribers", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		// ?confirmed=true vouches that every row has consented, as the CLI's --confirmed does.
		list := r.PathValue("name")
		opts := ImportOptions{List: list, Confirmed: r.URL.Query().Get("confirmed") == "true", Source: "api", MaxProblems: maxListedProblems,
			Stored: func(rows, line int) {
				// A large import takes a while: the log says how far it is.
				if rows%importLogEvery < importBatch {
					a.Log.Info("import progress", "list", list, "rows_stored", rows, "line", line)
				}
			}}
		start := time.Now()
		rep, err := a.Store.Import(r.Context(), http.MaxBytesReader(w, r.Body, maxImportBody), opts)
		var stopped *ImportStopped
		if errors.As(err, &stopped) {
			// The report so far goes back with the error: what was stored, and the line to look at.
			status, why := http.StatusServiceUnavailable, "the datastore failed (the server log says how)"
			var tooLarge *http.MaxBytesError
			switch {
			case errors.As(err, &tooLarge):
				status, why = http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d MiB; split the file", maxImportBody>>20)
			case errors.Is(err, context.Canceled):
				why = "the request was cancelled"
			case stopped.Read:
				status, why = http.StatusBadRequest, fmt.Sprintf("reading the body failed (%v)", errors.Unwrap(stopped.Err))
			}
			a.Log.Error("import stopped", "list", list, "line", stopped.Line, "rows_stored", stopped.Stored, "seconds", time.Since(start).Seconds(), "err", err)
			writeJSON(w, status, map[string]any{
				"error": fmt.Sprintf("import stopped at line %d with %d rows stored before it: %s; post the same file again to finish it (rows already stored are not added twice)",
					stopped.Line, stopped.Stored, why),
				"report": rep,
			})
			return nil, 0, nil
		}
		if err == nil {
			a.Log.Info("import", "list", list, "added", rep.Added, "updated", rep.Updated, "unchanged", rep.Unchanged, "not_imported", rep.NotImported,
				"lines", rep.Lines, "seconds", time.Since(start).Seconds())
		}
		return rep, http.StatusOK, err
	})
	mux.HandleFunc("GET /api/lists/{name}/subscribers", a.auth(func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		if err := a.Store.Export(r.Context(), r.PathValue("name"), w); err != nil {
			return nil, 0, err
		}
		return nil, 0, nil
	}))
	h("POST /api/campaigns", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		var in struct {
			Name     string            `json:"name"`
			Subject  string            `json:"subject"`
			Body     string            `json:"body"`
			Subjects map[string]string `json:"subjects"` // per language
			Bodies   map[string]string `json:"bodies"`   // per language
			Lists    []string          `json:"lists"`
			Segment  string            `json:"segment"`
			From     string            `json:"from"`
			SendAt   time.Time         `json:"send_at"`
			Event    string            `json:"event"`
			Before   string            `json:"send_before"` // a reminder: this long before the event starts, e.g. "24h"
		}
		if err := decode(r, &in); err != nil {
			return nil, 0, err
		}
		c := Content{Subject: map[string]string{"": in.Subject}, Body: map[string]string{"": in.Body}}
		for l, s := range in.Subjects {
			c.Subject[l] = s
		}
		for l, b := range in.Bodies {
			c.Body[l] = b
		}
		if strings.TrimSpace(in.Subject) == "" || strings.TrimSpace(in.Body) == "" {
			return nil, 0, fmt.Errorf("%w: subject and body are required", ErrInvalid)
		}
		var before time.Duration
		if in.Before != "" {
			var err error
			if before, err = time.ParseDuration(in.Before); err != nil {
				return nil, 0, fmt.Errorf("%w: send_before %q: want a duration such as 24h", ErrInvalid, in.Before)
			}
		}
		created, err := a.Store.CreateCampaign(r.Context(), Campaign{Name: in.Name, Lists: in.Lists, Segment: in.Segment, From: in.From, Content: c, SendAt: in.SendAt, Event: in.Event, SendBefore: before},
			func(c Content) error { _, err := Compile(c, a.Layout); return err })
		return created, http.StatusCreated, err
	})
	h("GET /api/campaigns/{id}", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		id, err := pathID(r)
		if err != nil {
			return nil, 0, err
		}
		c, err := a.Store.Campaign(r.Context(), id)
		return c, http.StatusOK, err
	})
	h("GET /api/campaigns/{id}/status", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		id, err := pathID(r)
		if err != nil {
			return nil, 0, err
		}
		st, err := a.Store.CampaignStatus(r.Context(), id)
		return st, http.StatusOK, err
	})
	h("GET /api/campaigns/{id}/failures", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		id, err := pathID(r)
		if err != nil {
			return nil, 0, err
		}
		f, err := a.Store.Failures(r.Context(), id)
		if f == nil {
			f = []Failure{}
		}
		return f, http.StatusOK, err
	})
	h("GET /api/campaigns/{id}/preview", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		id, err := pathID(r)
		if err != nil {
			return nil, 0, err
		}
		p, err := a.Store.Preview(r.Context(), id, r.URL.Query().Get("subscriber"), a.Layout, a.Worker)
		return map[string]string{"subject": p.Subject, "html": p.HTML, "text": p.Text}, http.StatusOK, err
	})
	h("POST /api/campaigns/{id}/{op}", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		id, err := pathID(r)
		if err != nil {
			return nil, 0, err
		}
		ctx := r.Context()
		switch op := r.PathValue("op"); op {
		case "start", "pause", "resume", "cancel":
			if _, err := a.Store.Transition(ctx, id, op); err != nil {
				return nil, 0, err
			}
		case "resend-failed":
			if _, err := a.Store.ResendFailed(ctx, id); err != nil {
				return nil, 0, err
			}
		case "test":
			var in struct{ To string }
			if err := decode(r, &in); err != nil {
				return nil, 0, err
			}
			if err := a.Store.SendTest(ctx, id, in.To, a.Layout, a.Transport, a.Worker); err != nil {
				return nil, 0, err
			}
		default:
			return nil, 0, fmt.Errorf("%w: unknown operation %q", ErrNotFound, op)
		}
		st, err := a.Store.CampaignStatus(ctx, id)
		return st, http.StatusOK, err
	})
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a campaign id", ErrInvalid, r.PathValue("id"))
	}
	return id, nil
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: the body must be JSON: %v", ErrInvalid, err)
	}
	return nil
}

// auth checks the bearer token, runs fn, and writes its result or error as JSON.
func (a *API) auth(fn func(w http.ResponseWriter, r *http.Request) (any, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if a.Token == "" || !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(a.Token)) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "send Authorization: Bearer <CSRDESK_API_TOKEN>"})
			return
		}
		v, status, err := fn(w, r)
		if err != nil {
			status = http.StatusInternalServerError
			switch {
			case errors.Is(err, ErrNotFound):
				status = http.StatusNotFound
			case errors.Is(err, ErrInvalid):
				status = http.StatusBadRequest
			case errors.Is(err, ErrExists), errors.Is(err, ErrState):
				status = http.StatusConflict
			case errors.Is(err, ErrTooMany):
				status = http.StatusTooManyRequests
			case errors.Is(err, ErrNotSent):
				status = http.StatusServiceUnavailable
			default:
				a.Log.Error("api", "path", r.URL.Path, "err", err)
				err = errors.New("internal error")
			}
			writeJSON(w, status, map[string]string{"error": err.Error()})
			return
		}
		if status != 0 {
			writeJSON(w, status, v)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
