package actions

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/lib/pq"

	"agora/models/modelstest"
	"agora/modproxy"
)

// TestStatusOf checks the table from errors to statuses, and that a client
// is told nothing of the internals of a server-side failure.
func TestStatusOf(t *testing.T) {
	diskFull := &os.PathError{Op: "write", Path: "/srv/agora/tmp/fetch-1.zip", Err: syscall.ENOSPC}
	dbFull := modelstest.SQLiteFullError(t)
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 5432}, Err: syscall.ECONNREFUSED}
	tests := []struct {
		err     error
		status  int
		code    string
		message string
	}{
		{fmt.Errorf("m@v1.0.0: %w", modproxy.ErrNotFound), http.StatusNotFound, "not_found", "m@v1.0.0: not found"},
		{fmt.Errorf("m@v1.0.0: %w", modproxy.ErrUpstream), http.StatusBadGateway, "bad_gateway", "m@v1.0.0: upstream failed"},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable", "context deadline exceeded"},
		{fmt.Errorf("waiting for m@v1.0.0: %w", context.Canceled), 499, "client_closed_request", "waiting for m@v1.0.0: context canceled"},
		{fmt.Errorf("m@v1.0.0: %w: %w (%w)", modproxy.ErrInvalid, errBodyTimeout, context.Canceled), http.StatusRequestTimeout, "request_timeout", "m@v1.0.0: invalid: request body timeout (context canceled)"},
		{fmt.Errorf("fetch m@v1.0.0: storing the zip: %w", diskFull), http.StatusInsufficientStorage, "insufficient_storage", "the server's disk is full"},
		{fmt.Errorf("database error on committing or rolling back transaction: %w", dbFull), http.StatusInsufficientStorage, "insufficient_storage", "the server's disk is full"},
		{fmt.Errorf("models: insert m@v1.0.0: %w", &pq.Error{Code: "53100", Message: "could not extend file"}), http.StatusInsufficientStorage, "insufficient_storage", "the server's disk is full"},
		{fmt.Errorf("reading the database: %w", os.ErrPermission), http.StatusInternalServerError, "internal", "internal error"},
		{fmt.Errorf("models: versions of m: %w", refused), http.StatusServiceUnavailable, "unavailable", "the database is unavailable"},
		{fmt.Errorf("m@v1.0.0: %w: %w", modproxy.ErrUpstream, refused), http.StatusBadGateway, "bad_gateway", "m@v1.0.0: upstream failed: " + refused.Error()},
	}
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	r := httptest.NewRequest(http.MethodGet, "/m/@v/v1.0.0.zip", nil)
	for _, tt := range tests {
		logged.Reset()
		status, code := statusOf(tt.err)
		msg := errorMessage(log, r, status, tt.err)
		if status != tt.status || code != tt.code || msg != tt.message {
			t.Errorf("%v: %d %s %q; want %d %s %q", tt.err, status, code, msg, tt.status, tt.code, tt.message)
		}
		// Only the server's own failures are worth an operator's look.
		wantLog := status == http.StatusInternalServerError || status == http.StatusInsufficientStorage ||
			msg == "the database is unavailable"
		if (logged.Len() > 0) != wantLog {
			t.Errorf("%v: logged %q; want a line: %v", tt.err, logged.String(), wantLog)
		}
		if status >= 500 && status != http.StatusBadGateway && strings.Contains(msg, "/srv/") {
			t.Errorf("%v: the message %q shows the server's files", tt.err, msg)
		}
		if status != http.StatusBadGateway && strings.Contains(msg, "10.0.0.5") {
			t.Errorf("%v: the message %q shows the database's address", tt.err, msg)
		}
	}
}
