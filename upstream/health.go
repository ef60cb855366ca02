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
//
// Requests that come while the one let through is under way wait for it,
// up to probeWait, and are sent if it got an answer: the go command asks
// for many files at once, and one build would otherwise fail for every
// request that came during the round trip that found the proxy back. A
// proxy that is still down, and does not answer the probe within
// probeWait, delays them no longer than that.
const (
	downAfter    = 3
	firstCooloff = 5 * time.Second
	maxCooloff   = time.Minute
	probeWait    = 2 * time.Second
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
	probing  bool          // the request let through after the cool-off is under way
	probed   chan struct{} // closed when that request has ended
}

// Health tracks whether upstream proxies answer, each by its URL. The
// clients of a Router share one, and so can other clients of the same
// proxies, such as the checksum database's, which asks their /sumdb/
// endpoints: a proxy that stopped answering one stops being asked by all.
// It is safe for concurrent use.
type Health struct {
	log       *slog.Logger
	observer  HealthObserver // nil: none
	now       func() time.Time
	probeWait time.Duration

	mu sync.Mutex
	m  map[string]*health
}

// NewHealth returns a Health on which every proxy is up. It logs to log
// (nil: nowhere) when a proxy goes down and when it answers again, and
// tells observer, if not nil.
func NewHealth(log *slog.Logger, observer HealthObserver) *Health {
	return newHealth(log, observer, time.Now)
}

func newHealth(log *slog.Logger, observer HealthObserver, now func() time.Time) *Health {
	if log == nil {
		log = discardLogger
	}
	return &Health{log: log, observer: observer, now: now, probeWait: probeWait, m: make(map[string]*health)}
}

// get returns the health of the proxy name, a redacted URL.
func (hs *Health) get(name string) *health {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.m[name]
	if h == nil {
		h = new(health)
		hs.m[name] = h
	}
	return h
}

// unansweredError is the failure of a request that got no answer from the
// proxy, which counts towards its being down.
type unansweredError struct{ err error }

func (e *unansweredError) Error() string { return e.err.Error() }
func (e *unansweredError) Unwrap() error { return e.err }

// NoAnswer returns err marked as the failure of a request that got no
// answer from its proxy (no connection, no response in time, a 5xx or 429
// after every retry), for Health.Do.
func NoAnswer(err error) error { return &unansweredError{err} }

// Do runs send, one request to the proxy at proxyURL (retries included),
// unless the proxy is down: then it fails at once with an error wrapping
// ErrDown. A failure of send marked with NoAnswer counts towards the
// proxy's being down; any other outcome is an answer, which brings it back
// up. A failure once ctx has ended says nothing about the proxy.
func (hs *Health) Do(ctx context.Context, proxyURL string, send func() error) error {
	name := redact(proxyURL)
	return hs.run(ctx, hs.get(name), name, send)
}

// run is Do for the proxy name, whose health is h. After its cool-off one
// request is let through to find out whether it is back; the others wait
// for it, up to probeWait, and are sent if it got an answer, else fail.
func (hs *Health) run(ctx context.Context, h *health, name string, send func() error) error {
	now := hs.now()
	h.mu.Lock()
	probe := false
	if h.down && h.probing {
		probed := h.probed
		h.mu.Unlock()
		timer := time.NewTimer(hs.probeWait)
		select {
		case <-probed:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		now = hs.now()
		h.mu.Lock()
	}
	if h.down {
		if now.Before(h.until) || h.probing || ctx.Err() != nil {
			err := h.downError(name, now)
			h.mu.Unlock()
			return err
		}
		h.probing, probe = true, true
		h.probed = make(chan struct{})
	}
	h.mu.Unlock()

	err := send()

	var ue *unansweredError
	unanswered := errors.As(err, &ue)
	h.mu.Lock()
	defer h.mu.Unlock()
	if probe {
		h.probing = false
		defer close(h.probed) // once the outcome is recorded
	}
	now = hs.now()
	switch {
	case err != nil && ctx.Err() != nil:
		// Given up by the caller: says nothing about the proxy.
	case !unanswered:
		if h.down {
			// A warning as its going down was, so that a log kept from
			// warnings up does not leave the proxy down for good.
			hs.log.Warn("an upstream proxy answers again", "upstream", name, "down_for", now.Sub(h.since).Round(time.Second))
			hs.report(name, false)
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
			hs.log.Warn("an upstream proxy is down: requests to it fail at once until it answers again",
				"upstream", name, "failures", h.failures, "err", err, "asked_again_in", h.cooloff)
			hs.report(name, true)
		}
	}
	return err
}

// sendTo runs the request send to p unless p is down (see Health.Do).
func (c *Client) sendTo(ctx context.Context, p *proxy, send func(*proxy) error) error {
	return c.opts.Health.run(ctx, p.health, p.name, func() error { return send(p) })
}

// report tells the observer, if any, that the proxy name went down or
// answers again.
func (hs *Health) report(name string, down bool) {
	if hs.observer != nil {
		hs.observer.ProxyDown(name, down)
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
