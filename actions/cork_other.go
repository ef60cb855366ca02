//go:build !linux

package actions

import "net/http"

// cork does nothing here: TCP_CORK is Linux's.
func cork(*http.Request) (uncork func()) { return func() {} }
