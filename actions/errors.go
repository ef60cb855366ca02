package actions

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"syscall"

	"agora/models"
	"agora/modproxy"
)

// errorStatus is the one table from domain errors to HTTP statuses and error
// codes. The first entry that errors.Is matches wins; anything unmatched is
// an internal error.
var errorStatus = []struct {
	err    error
	status int
	code   string
}{
	{modproxy.ErrNotFound, http.StatusNotFound, "not_found"},
	{models.ErrNotFound, http.StatusNotFound, "not_found"},
	{modproxy.ErrGone, http.StatusGone, "gone"},
	{modproxy.ErrInvalid, http.StatusBadRequest, "invalid"},
	{modproxy.ErrConflict, http.StatusConflict, "conflict"},
	{modproxy.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{modproxy.ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
	{modproxy.ErrForbidden, http.StatusForbidden, "forbidden"},
	{modproxy.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{modproxy.ErrUpstream, http.StatusBadGateway, "bad_gateway"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable"},
}

// statusClientClosedRequest is nginx's 499: the client went away before the
// answer was ready, which cancelled the request's context. Nobody receives
// it; it is what the request log and the metrics record, so that a go command
// interrupted with ^C is not counted as a failure of the server.
const statusClientClosedRequest = 499

// statusText is http.StatusText, with a text for 499.
func statusText(status int) string {
	if status == statusClientClosedRequest {
		return "client closed request"
	}
	return http.StatusText(status)
}

// statusOf returns the HTTP status and error code for err.
func statusOf(err error) (int, string) {
	if errors.Is(err, errBodyTimeout) {
		// Checked first: the request's context is cancelled too.
		return http.StatusRequestTimeout, "request_timeout"
	}
	if errors.Is(err, context.Canceled) {
		// Requests are cancelled only when their client goes away (a
		// fetch others wait for runs on, detached).
		return statusClientClosedRequest, "client_closed_request"
	}
	var maxBytes *http.MaxBytesError
	if errors.As(err, &maxBytes) {
		return http.StatusRequestEntityTooLarge, "too_large"
	}
	if errors.Is(err, syscall.ENOSPC) || models.DiskFull(err) {
		// Storage's disk, tmp/'s, or the database's.
		return http.StatusInsufficientStorage, "insufficient_storage"
	}
	for _, e := range errorStatus {
		if errors.Is(err, e.err) {
			return e.status, e.code
		}
	}
	if models.Unavailable(err) {
		// Checked last: an upstream that cannot be reached is a 502.
		return http.StatusServiceUnavailable, "unavailable"
	}
	return http.StatusInternalServerError, "internal"
}

// errorMessage returns what a client is told about err: the error itself for
// the statuses the table maps, and nothing of the internals otherwise, which
// are logged instead.
func errorMessage(log *slog.Logger, r *http.Request, status int, err error) string {
	switch status {
	case http.StatusInternalServerError:
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		return "internal error"
	case http.StatusInsufficientStorage:
		log.Error("the disk is full", "method", r.Method, "path", r.URL.Path, "err", err)
		return "the server's disk is full"
	case http.StatusServiceUnavailable:
		if models.Unavailable(err) {
			// The error names the database's address.
			log.Error("the database is unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
			return "the database is unavailable"
		}
	}
	return err.Error()
}

// apiError is the JSON body of every API error.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// For conflicts: the hash first recorded and the one uploaded.
	RecordedHash string `json:"recorded_hash,omitempty"`
	UploadedHash string `json:"uploaded_hash,omitempty"`
}

// newAPIError returns the status and body for err.
func newAPIError(log *slog.Logger, r *http.Request, err error) (int, apiError) {
	status, code := statusOf(err)
	body := apiError{Error: errorMessage(log, r, status, err), Code: code}
	var conflict *modproxy.ConflictError
	if errors.As(err, &conflict) {
		body.RecordedHash, body.UploadedHash = conflict.RecordedHash, conflict.UploadedHash
	}
	return status, body
}
