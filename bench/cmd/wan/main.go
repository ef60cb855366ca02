// Command wan is a TCP relay that puts a wide-area link between a client and
// a server on one machine: every byte it forwards arrives half a round-trip
// time later, in both directions, and a new connection's first bytes wait
// for the handshakes first. bench/replay.sh puts it in front of its upstream
// with UPSTREAM_RTT, so that the cold fill can be measured against an
// upstream as far away as a public module mirror, not only on loopback.
//
// What it models:
//
//   - Latency: data read from one side is written to the other rtt/2 after
//     it was read. Data in flight is pipelined, as on a real link: a 1 MB
//     response takes rtt/2 plus its transfer time, not one rtt per chunk.
//   - Connection set-up: a connection's first bytes towards the server wait
//     -handshakes round trips more (default 2: TCP's and TLS 1.3's, as for an
//     https upstream), so a client that opens many connections pays for them.
//   - A window: about -window bytes per direction and connection at most are
//     in flight (-window/64 KiB reads; Linux's default largest TCP receive
//     window is 6 MiB), so one connection moves at most window/rtt bytes per
//     second.
//   - Bandwidth, with -rate: all connections together move at most that many
//     bytes per second per direction (an access link shared by all).
//
// It does not model loss, reordering or congestion control: TCP on both
// sides of the relay runs on loopback.
//
// Usage:
//
//	wan -listen 127.0.0.1:9000 -to 127.0.0.1:8080 -rtt 20ms
//	wan -listen 127.0.0.1:9000 -to 127.0.0.1:8080 -rtt 40ms -rate 12500000
//
// It runs until it gets SIGINT or SIGTERM.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	var (
		listen     = flag.String("listen", "127.0.0.1:0", "address to listen on")
		to         = flag.String("to", "", "address of the server (required)")
		rtt        = flag.Duration("rtt", 20*time.Millisecond, "round-trip time to add")
		handshakes = flag.Int("handshakes", 2, "extra round trips before a new connection's first bytes")
		window     = flag.Int("window", 6<<20, "bytes in flight per direction and connection, at most")
		rate       = flag.Int64("rate", 0, "bytes per second per direction, all connections together; 0: no limit")
	)
	flag.Parse()
	if *to == "" || *rtt < 0 || *handshakes < 0 || *window < chunkSize || *rate < 0 {
		fmt.Fprintln(os.Stderr, "usage: wan -listen ADDR -to ADDR [-rtt D] [-handshakes N] [-window BYTES] [-rate BYTES/S]")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	l := &link{
		to:     *to,
		oneWay: *rtt / 2,
		setup:  time.Duration(*handshakes) * *rtt,
		window: *window,
		up:     newLimiter(*rate),
		down:   newLimiter(*rate),
		dialer: net.Dialer{Timeout: 10 * time.Second},
	}
	fmt.Printf("wan: %s -> %s, rtt %v, %d handshakes, window %d B, rate %d B/s\n", ln.Addr(), *to, *rtt, *handshakes, *window, *rate)
	if err := l.serve(ctx, ln); ctx.Err() == nil {
		log.Fatal(err)
	}
}

// chunkSize is the most the relay reads at once.
const chunkSize = 64 << 10

// link relays connections to one server over an emulated wide-area link.
type link struct {
	to       string
	oneWay   time.Duration // the delay of every byte, each way
	setup    time.Duration // the extra delay of a connection's first bytes
	window   int           // bytes in flight per direction and connection
	up, down *limiter      // towards the server, towards the client
	dialer   net.Dialer
}

// serve relays the connections ln accepts until ln fails or is closed, and
// returns that error; it does not wait for the connections it relays.
func (l *link) serve(ctx context.Context, ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go l.relay(ctx, c.(*net.TCPConn))
	}
}

// relay forwards c to a new connection to the server, both ways, until
// both sides have closed.
func (l *link) relay(ctx context.Context, client *net.TCPConn) {
	defer client.Close()
	sc, err := l.dialer.DialContext(ctx, "tcp", l.to)
	if err != nil {
		log.Printf("wan: %v", err)
		return
	}
	server := sc.(*net.TCPConn)
	defer server.Close()
	done := make(chan struct{}, 2)
	go func() { l.pipe(server, client, l.up, l.setup); done <- struct{}{} }()
	go func() { l.pipe(client, server, l.down, 0); done <- struct{}{} }()
	<-done
	<-done
}

// chunk is data read from one side, due at the other side at due.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, delaying every chunk by l.oneWay (and the first
// one by setup more) and holding at most l.window bytes in flight. When src
// ends, dst's write side is closed once what is in flight has arrived.
func (l *link) pipe(dst, src *net.TCPConn, lim *limiter, setup time.Duration) {
	queue := make(chan chunk, l.window/chunkSize)
	var inFlight sync.WaitGroup
	inFlight.Add(1)
	go func() { // the sending side of the link: delivers chunks when due
		defer inFlight.Done()
		failed := false
		for c := range queue {
			if failed {
				continue // drain, so that the reader never blocks
			}
			time.Sleep(time.Until(c.due))
			lim.wait(len(c.data))
			if _, err := dst.Write(c.data); err != nil {
				failed = true
				src.CloseRead()
			}
		}
		if !failed {
			dst.CloseWrite()
		}
	}()
	first, buf := true, make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			due := time.Now().Add(l.oneWay)
			if first {
				due, first = due.Add(setup), false
			}
			queue <- chunk{data: bytes.Clone(buf[:n]), due: due}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				dst.SetLinger(0) // a reset stays a reset
			}
			break
		}
	}
	close(queue)
	inFlight.Wait()
}

// limiter lets through at most rate bytes per second, on average over all
// its callers; a nil limiter lets everything through.
type limiter struct {
	mu   sync.Mutex
	rate float64
	next time.Time // when the link is free again
}

func newLimiter(rate int64) *limiter {
	if rate == 0 {
		return nil
	}
	return &limiter{rate: float64(rate)}
}

// wait returns when n more bytes fit in the rate.
func (l *limiter) wait(n int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	start := l.next
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	l.mu.Unlock()
	time.Sleep(time.Until(start))
}
