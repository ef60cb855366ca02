//go:build !linux

package main

import "net/http"

// cork does nothing where TCP_CORK does not exist.
func cork(*http.Request) (uncork func()) { return func() {} }
