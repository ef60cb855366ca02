package upstream

import (
	"bufio"
	"fmt"
	"io"
	pathpkg "path"
	"strings"

	"golang.org/x/mod/module"
)

// Rule routes the module paths matching Pattern to their own upstream
// list, or to none.
type Rule struct {
	// Pattern is a glob pattern of GONOSUMDB/GOPRIVATE syntax (or a
	// comma-separated list of them): it matches a path when it matches a
	// prefix of the path's elements, so "corp.example.com" matches
	// "corp.example.com/a/b" and "*.corp.example.com" any subdomain.
	Pattern string
	// Proxies is the upstream list of the matching paths; nil with None.
	Proxies []Proxy
	// None means the matching paths are never fetched: only what is
	// stored is served.
	None bool
	// Line is the rule's line in its file, for messages.
	Line int
}

// Match reports whether the rule applies to the module path.
func (r Rule) Match(path string) bool { return module.MatchPrefixPatterns(r.Pattern, path) }

// ParseRules reads a rules file (AGORA_RULES), whose name is used in
// errors ("name:line: ..."). Each line holds one rule,
//
//	pattern  upstream-list
//	pattern  none
//
// where pattern is a GONOSUMDB-style glob (corp.example.com,
// *.corp.example.com, github.com/acme/*) and upstream-list a GOPROXY-style
// list as ParseList reads it ("off" is the same as none). Fields are
// separated by spaces or tabs; '#' starts a comment; blank lines are
// ignored. The first rule that matches a path wins (see Router).
func ParseRules(r io.Reader, name string) ([]Rule, error) {
	var rules []Rule
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if line == 1 {
			// A byte-order mark, which some editors write, is the
			// file's; left in, it would make the first pattern one
			// that matches nothing.
			text = strings.TrimPrefix(text, "\ufeff")
		}
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		pattern, list, _ := strings.Cut(strings.ReplaceAll(text, "\t", " "), " ")
		list = strings.TrimSpace(list)
		if list == "" {
			return nil, fmt.Errorf("%s:%d: %q has no upstream: want \"pattern upstream-list\" or \"pattern none\"", name, line, text)
		}
		if err := CheckPattern(pattern); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		rule := Rule{Pattern: pattern, Line: line}
		switch list {
		case "none", "off":
			rule.None = true
		default:
			proxies, err := ParseList(list)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", name, line, err)
			}
			if len(proxies) == 0 {
				return nil, fmt.Errorf("%s:%d: the list %q has no proxy URL (Agora never fetches direct from version control): write none for paths never fetched", name, line, RedactList(list))
			}
			rule.Proxies = proxies
		}
		rules = append(rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return rules, nil
}

// CheckPattern checks a comma-separated list of GONOSUMDB-style globs, a
// rule's pattern or AGORA_NOSUMDB: each must be a valid path.Match
// pattern of printable ASCII without spaces, as module paths are (a glob
// with anything else would silently match nothing, and the paths it was
// written for would be treated as any other), and there must be one.
func CheckPattern(pattern string) error {
	globs := 0
	for glob := range strings.SplitSeq(pattern, ",") {
		glob = strings.TrimSuffix(glob, "/")
		if glob == "" {
			continue
		}
		if _, err := pathpkg.Match(glob, ""); err != nil {
			return fmt.Errorf("pattern %q: %v", glob, err)
		}
		for _, r := range glob {
			if r <= ' ' || r > '~' {
				return fmt.Errorf("pattern %q: %U is in no module path, so the pattern would match nothing", glob, r)
			}
		}
		globs++
	}
	if globs == 0 {
		return fmt.Errorf("pattern %q matches nothing", pattern)
	}
	return nil
}

// Router picks the upstream of a module path: the client of the first
// rule that matches it, else the default list's. Its clients share one
// transport. It is safe for concurrent use.
type Router struct {
	def     *Client
	rules   []Rule
	clients []*Client // by rule; nil for a rule of none
}

// NewRouter returns a Router with the default list def and the rules.
// All its clients use opts, and share opts.Transport, or one new
// transport from NewTransport if it is nil.
func NewRouter(def []Proxy, rules []Rule, opts Options) *Router {
	if opts.Transport == nil {
		opts.Transport = NewTransport(opts)
	}
	opts = opts.withDefaults() // one Health for every client
	r := &Router{rules: append([]Rule(nil), rules...), clients: make([]*Client, len(rules))}
	if len(def) > 0 {
		r.def = New(def, opts)
	}
	for i, rule := range rules {
		if !rule.None && len(rule.Proxies) > 0 {
			r.clients[i] = New(rule.Proxies, opts)
		}
	}
	return r
}

// For returns the client that fetches the module path, or nil when path
// is not fetched: the first rule that matches it is none, or no rule
// matches and there is no default list (off, or empty).
func (r *Router) For(path string) *Client {
	if r == nil {
		return nil
	}
	if i := FirstMatch(r.rules, path); i >= 0 {
		return r.clients[i]
	}
	return r.def
}

// FirstMatch returns the index of the first of rules that matches path,
// the one that routes it, or -1 if none does.
func FirstMatch(rules []Rule, path string) int {
	for i, rule := range rules {
		if rule.Match(path) {
			return i
		}
	}
	return -1
}
