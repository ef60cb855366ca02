//go:build !linux

package cork

import "net/http"

// Response does nothing here: TCP_CORK is Linux's.
func Response(*http.Request) (uncork func()) { return func() {} }
