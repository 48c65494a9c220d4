package faq

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Live serves the current Matcher of a knowledge base that may change on disk. A reload that finds the base
// invalid logs every problem and keeps the last good Matcher serving.
type Live struct {
	dir string // "" for the embedded base
	cfg Config
	log *slog.Logger
	cur atomic.Pointer[Matcher]
}

// Open loads the knowledge base in dir, or the embedded one when dir is "". It fails if the base is invalid:
// there is no last good base to fall back on yet.
func Open(dir string, cfg Config, log *slog.Logger) (*Live, error) {
	l := &Live{dir: dir, cfg: cfg, log: log}
	m, problems := l.load()
	if m == nil {
		return nil, fmt.Errorf("knowledge base %s is invalid:\n%w", l.name(), problems)
	}
	l.cur.Store(m)
	l.notes(problems)
	return l, nil
}

// Matcher returns the matcher of the last good base.
func (l *Live) Matcher() *Matcher { return l.cur.Load() }

func (l *Live) name() string {
	if l.dir == "" {
		return "(embedded)"
	}
	return l.dir
}

func (l *Live) fsys() fs.FS {
	if l.dir == "" {
		return Embedded()
	}
	return os.DirFS(l.dir)
}

func (l *Live) load() (*Matcher, Problems) {
	b, problems := Load(l.fsys())
	if b == nil {
		return nil, problems
	}
	return NewMatcher(b, l.cfg), problems
}

func (l *Live) notes(problems Problems) {
	n := 0
	for _, p := range problems {
		if p.Note {
			n++
		}
	}
	if n > 0 {
		l.log.Info("knowledge base has entries for the platform owner to complete", "count", n, "see", "csrdesk faq check")
	}
}

// Reload reads the base again. If it is invalid, it logs each problem and returns an error; the previous base
// keeps serving.
func (l *Live) Reload() error {
	start := time.Now()
	m, problems := l.load()
	if m == nil {
		for _, p := range problems {
			if !p.Note {
				l.log.Error("knowledge base problem", "where", fmt.Sprintf("%s:%d", filepath.Join(l.dir, p.File), p.Line), "problem", p.Msg)
			}
		}
		l.log.Error("knowledge base not reloaded: keeping the last good one", "dir", l.name())
		return fmt.Errorf("knowledge base %s is invalid:\n%w", l.name(), problems)
	}
	l.cur.Store(m)
	l.log.Info("knowledge base loaded", "dir", l.name(), "entries", len(m.Base().Entries), "took", time.Since(start).Round(time.Millisecond))
	l.notes(problems)
	return nil
}

// Watch reloads the base whenever its files change, until ctx is done. The embedded base never changes, so
// Watch returns at once for it.
func (l *Live) Watch(ctx context.Context) error {
	if l.dir == "" {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch knowledge base: %w", err)
	}
	defer w.Close()
	for _, d := range []string{l.dir, filepath.Join(l.dir, "entries")} {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch knowledge base: %w", err)
		}
	}
	// Editors save in several steps (write a temporary file, rename it); wait for the burst to end.
	const settle = 200 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Remove|fsnotify.Rename) != 0 {
				timer.Reset(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			l.log.Warn("watching the knowledge base", "err", err)
		case <-timer.C:
			_ = l.Reload() // an invalid base is logged and the last good one kept
		}
	}
}
