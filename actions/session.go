package actions

import (
	"net/http"

	"github.com/gorilla/sessions"
)

// flashKey is where Buffalo keeps a session's flash messages, as JSON.
const flashKey = "_flash_"

// lazySessions is a session store that sends no cookie for a new session
// that holds nothing. Buffalo saves the session each time a handler
// renders, with its flash messages in it even when there are none, and a
// cookie store answers every save with a Set-Cookie: every health check,
// home page and API answer carried a session cookie, which shared caches
// take as a reason not to store a response and API clients keep in their
// jars. A session that holds something, or that the client sent (so that
// clearing it reaches the client), is saved as the store saves it.
type lazySessions struct{ sessions.Store }

// Get implements sessions.Store, through the request's registry as the
// stores of package sessions do.
func (s lazySessions) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New implements sessions.Store. A session saves itself through the store
// that made it, so the session the wrapped store makes is copied into one
// of lazySessions.
func (s lazySessions) New(r *http.Request, name string) (*sessions.Session, error) {
	inner, err := s.Store.New(r, name)
	session := sessions.NewSession(s, name)
	if inner != nil {
		session.ID, session.Values, session.Options, session.IsNew = inner.ID, inner.Values, inner.Options, inner.IsNew
	}
	return session, err
}

// Save implements sessions.Store.
func (s lazySessions) Save(r *http.Request, w http.ResponseWriter, session *sessions.Session) error {
	if session.IsNew && holdsNothing(session.Values) {
		return nil
	}
	return s.Store.Save(r, w, session)
}

// holdsNothing reports whether values is empty but for Buffalo's record
// of no flash messages.
func holdsNothing(values map[any]any) bool {
	for k, v := range values {
		if flash, ok := v.([]byte); ok && k == flashKey && (string(flash) == "{}" || string(flash) == "null") {
			continue
		}
		return false
	}
	return true
}
