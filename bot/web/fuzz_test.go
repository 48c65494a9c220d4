package web

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"csrdesk/bot"
)

// fuzzChat is a chat id as POST /api/chat/session hands them out; the seeds use it so that the fuzzer starts
// past the id check.
const fuzzChat = "0123456789abcdef0123456789abcdef"

// FuzzChatMessage posts arbitrary bodies to the web chat's message API. Whatever a page (or anyone) sends, the
// server must not crash, and it refuses bad input with a 4xx rather than failing with a 5xx.
func FuzzChatMessage(f *testing.F) {
	for _, body := range []string{
		`{"chat":"` + fuzzChat + `","text":"Gilt die CSRD für unser Unternehmen?","lang":"de-DE"}`,
		`{"chat":"` + fuzzChat + `","data":"y:csrd-scope","label":"👍"}`,
		`{"chat":"` + fuzzChat + `","text":"/start","lang":"it"}`,
		`{"chat":"` + fuzzChat + `","text":"/human I need a person"}`,
		`{"chat":"` + fuzzChat + `","text":"/subscribe jo@example.de"}`,
		`not json`,
	} {
		f.Add([]byte(body))
	}
	fx := newFixture(f, Config{})
	mux := http.NewServeMux()
	fx.web.Register(mux)
	f.Fuzz(func(t *testing.T, body []byte) {
		// A fresh database each time: a chat that opened a ticket would send every later message to staff.
		if err := fx.web.rdb.FlushDB(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("POST", "/api/chat/messages", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("chat message answered %d %s", rec.Code, rec.Body)
		}
	})
}

// FuzzStaffReply posts arbitrary form bodies to the staff inbox's reply form, logged in and with the CSRF cookie
// (the seeds carry its token), on an open ticket. The server must not crash, and it answers with a redirect back
// to the ticket (or a 4xx), never a 5xx.
func FuzzStaffReply(f *testing.F) {
	const csrf = "fedcba9876543210fedcba9876543210"
	for _, body := range []string{
		"csrf=" + csrf + "&text=Hi%2C+Bea+here.+See+**the+guidance**.",
		"csrf=" + csrf + "&text=note%3A+big+customer",
		"csrf=" + csrf + "&text=+++",
		"text=no+token",
	} {
		f.Add([]byte(body))
	}
	fx := newFixture(f, Config{StaffToken: "tok"})
	mux := http.NewServeMux()
	fx.web.Register(mux)
	session := &http.Cookie{Name: sessionCookie, Value: fx.web.sessionValue("Bea", time.Now().Add(time.Hour))}
	ctx := context.Background()
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		// A new ticket now and then, so that its log (read on every reply) stays short.
		if n%200 == 0 {
			if err := fx.web.rdb.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if err := fx.engine.Handle(ctx, bot.Message{Channel: ChannelName, Chat: fuzzChat, User: fuzzChat, Text: "/human Please call me back"}); err != nil {
				t.Fatal(err)
			}
		}
		n++
		req := httptest.NewRequest("POST", "/staff/tickets/1/reply", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(session)
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: csrf})
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("staff reply answered %d %s", rec.Code, rec.Body)
		}
	})
}
