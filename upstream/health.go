package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrDown is wrapped by the error of a request that was not sent because
// its proxy is down: it failed several requests in a row and has not
// answered since.
var ErrDown = errors.New("upstream proxy is down")

// A proxy is down after downAfter requests in a row got no answer from it
// (no connection, no headers in time, a 5xx or 429 after every retry, a
// body cut short or too slow). Requests to it then fail at once, without
// waiting for timeouts and retries, for a cool-off that starts at
// firstCooloff and doubles, up to maxCooloff, each time the one request
// let through after it fails too.
//
// While the upstream is unreachable, a request for what is stored is
// answered from storage either way, but a module's list or @latest asks
// the upstream first (after the list TTL) and falls back to the stored
// versions only when it fails: without this, each such request would wait
// out the header timeout (30s) of an upstream that accepts connections and
// never answers.
const (
	downAfter    = 3
	firstCooloff = 5 * time.Second
	maxCooloff   = time.Minute
)

// health tracks whether one proxy answers. Its zero value is a proxy that
// is up.
type health struct {
	mu       sync.Mutex
	failures int       // requests in a row that got no answer
	last     error     // the last of them
	down     bool      // requests fail at once until until
	since    time.Time // when it went down
	until    time.Time
	cooloff  time.Duration
	probing  bool // the request let through after the cool-off is under way
}

// healthSet holds the health of proxies by name, so that the clients of
// one Router share it for a proxy that several rules name.
type healthSet struct {
	mu sync.Mutex
	m  map[string]*health
}

func newHealthSet() *healthSet { return &healthSet{m: make(map[string]*health)} }

func (s *healthSet) get(name string) *health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.m[name]
	if h == nil {
		h = new(health)
		s.m[name] = h
	}
	return h
}

// unansweredError is the failure of a request that got no answer from the
// proxy, which counts towards its being down.
type unansweredError struct{ err error }

func (e *unansweredError) Error() string { return e.err.Error() }
func (e *unansweredError) Unwrap() error { return e.err }

// sendTo runs the request send to p unless p is down, and records whether
// p answered it. After p's cool-off one request is let through to find
// out whether it is back; the others fail at once until it is done.
func (c *Client) sendTo(ctx context.Context, p *proxy, send func(*proxy) error) error {
	h := p.health
	now := c.opts.now()
	h.mu.Lock()
	probe := false
	if h.down {
		if now.Before(h.until) || h.probing {
			err := h.downError(p.name, now)
			h.mu.Unlock()
			return err
		}
		h.probing, probe = true, true
	}
	h.mu.Unlock()

	err := send(p)

	var ue *unansweredError
	unanswered := errors.As(err, &ue)
	h.mu.Lock()
	defer h.mu.Unlock()
	if probe {
		h.probing = false
	}
	now = c.opts.now()
	switch {
	case err != nil && ctx.Err() != nil:
		// Given up by the caller: says nothing about p.
	case !unanswered:
		if h.down {
			c.opts.Logger.Info("an upstream proxy answers again", "upstream", p.name, "down_for", now.Sub(h.since).Round(time.Second))
			c.reportHealth(p.name, false)
		}
		h.failures, h.last, h.down, h.cooloff = 0, nil, false, 0
	case h.down && probe:
		h.failures++
		h.last = err
		h.cooloff = min(2*h.cooloff, maxCooloff)
		h.until = now.Add(h.cooloff)
	default:
		h.failures++
		h.last = err
		if !h.down && h.failures >= downAfter {
			h.down, h.since, h.cooloff = true, now, firstCooloff
			h.until = now.Add(h.cooloff)
			c.opts.Logger.Warn("an upstream proxy is down: requests to it fail at once until it answers again",
				"upstream", p.name, "failures", h.failures, "err", err, "asked_again_in", h.cooloff)
			c.reportHealth(p.name, true)
		}
	}
	return err
}

// reportHealth tells the Observer, if it is a HealthObserver, that the proxy
// name went down or answers again.
func (c *Client) reportHealth(name string, down bool) {
	if o, ok := c.opts.Observer.(HealthObserver); ok {
		o.ProxyDown(name, down)
	}
}

// downError is the error of a request not sent to the proxy name, which
// is down. The caller holds h.mu.
func (h *health) downError(name string, now time.Time) error {
	when := "a request to find out whether it is back is under way"
	if wait := h.until.Sub(now); wait > 0 {
		when = fmt.Sprintf("it is asked again in %v", wait.Round(100*time.Millisecond))
	}
	return fmt.Errorf("%s not asked: %w (%d requests in a row got no answer, the last: %v); %s",
		name, ErrDown, h.failures, h.last, when)
}

// discardLogger is the Logger of Options without one.
var discardLogger = slog.New(slog.DiscardHandler)
