package actions

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gobuffalo/buffalo"

	"agora/auth"
	"agora/models"
	"agora/modproxy"
)

// bearerToken returns the API token a request carries: in
// "Authorization: Bearer <token>", or as the password of HTTP basic auth
// (any user name), so that a .netrc entry serves the go command.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok), true
	}
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, true
	}
	return "", false
}

// authenticate returns the principal the request acts as: anonymous when it
// carries no credentials, an error wrapping ErrUnauthorized when it carries
// bad ones.
func (d *Deps) authenticate(r *http.Request) (auth.Principal, error) {
	tok, ok := bearerToken(r)
	if !ok {
		return auth.Principal{}, nil
	}
	return models.Authenticate(r.Context(), d.DB, tok)
}

// challenge is the WWW-Authenticate header of a 401: basic for the go
// command and .netrc, bearer for API clients.
const challenge = `Basic realm="agora", Bearer realm="agora"`

// errNoToken answers an API request that carries no credentials.
var errNoToken = fmt.Errorf("%w: send a token as \"Authorization: Bearer <token>\" or as the basic-auth password", modproxy.ErrUnauthorized)

// principalKey is the buffalo.Context key of the request's auth.Principal.
const principalKey = "agora.principal"

// requireToken is the API's middleware: it authenticates the request and
// answers 401 unless it carries a valid token.
func (d *Deps) requireToken(next buffalo.Handler) buffalo.Handler {
	return func(c buffalo.Context) error {
		p, err := d.authenticate(c.Request())
		if err == nil && !p.Authenticated() {
			err = errNoToken
		}
		if err != nil {
			c.Response().Header().Set("WWW-Authenticate", challenge)
			return d.renderError(c, err)
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

// refuseUnstorableQuery is the API's middleware that answers 400 to a
// request whose query string has a name or value that is not valid UTF-8
// or holds a NUL byte. The API's parameters (q, actor, reason, ...) are
// text that is looked up or stored in the database, where no text can hold
// either: PostgreSQL would fail the query, an internal error, and SQLite
// would store or look up something else.
func (d *Deps) refuseUnstorableQuery(next buffalo.Handler) buffalo.Handler {
	return func(c buffalo.Context) error {
		for name, values := range c.Request().URL.Query() {
			for _, s := range append([]string{name}, values...) {
				if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
					return d.renderError(c, fmt.Errorf("%w: query parameter %q: not valid UTF-8, or holds a NUL byte", modproxy.ErrInvalid, name))
				}
			}
		}
		return next(c)
	}
}

// principal returns the principal that requireToken stored; anonymous if
// none was stored.
func principal(c buffalo.Context) auth.Principal {
	p, _ := c.Value(principalKey).(auth.Principal)
	return p
}

// whoami answers GET /api/v1/whoami with the caller's identity.
func (d *Deps) whoami(c buffalo.Context) error {
	p := principal(c)
	return c.Render(http.StatusOK, r.JSON(map[string]any{
		"user":     p.User,
		"role":     p.Role,
		"scope":    p.Scope.String(),
		"token_id": p.TokenID,
	}))
}
