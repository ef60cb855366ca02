package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// startLink relays to the server at addr through a link with the given
// round-trip time, handshakes and rate, and returns its address.
func startLink(t *testing.T, addr string, rtt time.Duration, handshakes int, rate int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{
		to:     addr,
		oneWay: rtt / 2,
		setup:  time.Duration(handshakes) * rtt,
		window: 1 << 20,
		up:     newLimiter(rate),
		down:   newLimiter(rate),
	}
	go l.serve(ctx, ln)
	t.Cleanup(func() { cancel(); ln.Close() })
	return ln.Addr().String()
}

// get fetches url with client and returns the body and how long it took.
func get(t *testing.T, client *http.Client, url string) ([]byte, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body, time.Since(start)
}

// The timings are lower bounds, which a slow machine cannot break: the
// relay must never deliver sooner than the link it models.
func TestLink(t *testing.T) {
	big := make([]byte, 3<<20)
	rand.Read(big)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Write(append([]byte("echo "), body...))
	}))
	defer srv.Close()

	const rtt = 40 * time.Millisecond
	url := "http://" + startLink(t, srv.Listener.Addr().String(), rtt, 2, 0)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	// The first request opens the connection: two handshakes and the
	// request's own round trip.
	if _, d := get(t, client, url+"/small"); d < 3*rtt {
		t.Errorf("first request on a new connection took %v, want at least 3 × %v", d, rtt)
	}
	// The next one reuses it: one round trip.
	if _, d := get(t, client, url+"/small"); d < rtt {
		t.Errorf("request on a kept-alive connection took %v, want at least %v", d, rtt)
	}
	body, _ := get(t, client, url+"/big")
	if !bytes.Equal(body, big) {
		t.Errorf("3 MiB body: got %d bytes that differ from what the server sent", len(body))
	}
	resp, err := client.Post(url+"/echo", "text/plain", bytes.NewReader(big[:100000]))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, append([]byte("echo "), big[:100000]...)) {
		t.Errorf("echo of 100000 bytes came back as %d bytes that differ", len(got))
	}
}

func TestLinkRate(t *testing.T) {
	big := make([]byte, 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(big) }))
	defer srv.Close()
	const rate = 8 << 20 // 1 MiB in at least 125 ms
	url := "http://" + startLink(t, srv.Listener.Addr().String(), 0, 0, rate)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	body, d := get(t, client, url)
	if len(body) != len(big) {
		t.Fatalf("got %d bytes, want %d", len(body), len(big))
	}
	if min := time.Second * time.Duration(len(big)) / rate; d < min*9/10 {
		t.Errorf("1 MiB at %d B/s took %v, want at least %v", rate, d, min)
	}
}

// A server that closes the connection closes it for the client too.
func TestLinkClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("bye"))
		c.Close()
	}()
	c, err := net.Dial("tcp", startLink(t, ln.Addr().String(), 10*time.Millisecond, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Errorf("read %q, %v; want \"bye\" and the end", got, err)
	}
}
