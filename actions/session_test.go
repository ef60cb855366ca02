package actions

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/sessions"
)

// TestLazySessionsSaveWhatHoldsSomething checks the other half of
// lazySessions: a session with something in it is sent to the client, and
// so is a session the client sent, even once cleared, so that clearing it
// (a logout) reaches the client.
func TestLazySessionsSaveWhatHoldsSomething(t *testing.T) {
	store := lazySessions{sessions.NewCookieStore([]byte("0123456789abcdef0123456789abcdef"))}
	save := func(r *http.Request, change func(*sessions.Session)) *http.Cookie {
		t.Helper()
		session, err := store.Get(r, "s")
		if err != nil {
			t.Fatal(err)
		}
		change(session)
		w := httptest.NewRecorder()
		if err := session.Save(r, w); err != nil {
			t.Fatal(err)
		}
		cookies := w.Result().Cookies()
		if len(cookies) == 0 {
			return nil
		}
		return cookies[0]
	}

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if c := save(r, func(s *sessions.Session) { s.Values[flashKey] = []byte("{}") }); c != nil {
		t.Fatalf("empty new session: cookie %v, want none", c)
	}
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	c := save(r, func(s *sessions.Session) { s.Values["user"] = "alice" })
	if c == nil {
		t.Fatal("session holding a user: no cookie")
	}

	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	var seen any
	c = save(r, func(s *sessions.Session) {
		seen = s.Values["user"]
		delete(s.Values, "user")
	})
	if seen != "alice" {
		t.Errorf("session read back holds user %v, want alice", seen)
	}
	if c == nil {
		t.Fatal("session the client sent, then cleared: no cookie to clear it")
	}
}
