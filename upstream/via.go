package upstream

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
)

// Agora marks the requests it sends upstream with a Via header naming the
// process (RFC 9110, section 7.6.3), so that a request that comes back to
// the process that sent it is recognised as a loop: AGORA_UPSTREAM naming
// this Agora itself (as its default does when the GOPROXY of the machine it
// runs on is this Agora), or a proxy that leads back to it. Without that,
// the request for a file would wait on the fetch of the very same file
// until its timeout. Chains of different Agoras, which is a sound
// set-up, pass: each recognises only its own name.

// NewViaName returns a name for this process in Via headers:
// "agora-" and 16 random hex digits.
func NewViaName() string {
	var b [8]byte
	rand.Read(b[:])
	return "agora-" + hex.EncodeToString(b[:])
}

// WithVia returns a RoundTripper that adds "Via: 1.1 name" to every request
// it passes to next.
func WithVia(next http.RoundTripper, name string) http.RoundTripper {
	return &viaTransport{next: next, via: "1.1 " + name}
}

type viaTransport struct {
	next http.RoundTripper
	via  string
}

func (t *viaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context()) // a RoundTripper must not change its request
	req.Header.Add("Via", t.via)
	return t.next.RoundTrip(req)
}

// CameBack reports whether the Via headers of h name name: whether the
// request passed through the process of that name before.
func CameBack(h http.Header, name string) bool {
	for _, v := range h.Values("Via") {
		for _, hop := range strings.Split(v, ",") {
			// A hop is "protocol-version received-by [comment]".
			f := strings.Fields(hop)
			if len(f) >= 2 && f[1] == name {
				return true
			}
		}
	}
	return false
}
