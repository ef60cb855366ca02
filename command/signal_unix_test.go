//go:build unix

package command

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"agora/internal/testutil"
	"agora/models"
	"agora/models/modelstest"
)

// agoraProcess is agora run in a process of its own: this test binary,
// which TestMain makes the agora command.
type agoraProcess struct {
	cmd    *exec.Cmd
	output *testutil.Buffer // standard output and error
	exited chan struct{}    // closed once it has exited
	err    error            // cmd.Wait's; read once exited is closed
}

// startAgora starts agora with args in a process of its own, with the
// test's environment. It is killed when the test ends, if it has not
// exited.
func startAgora(t *testing.T, args ...string) *agoraProcess {
	t.Helper()
	return startProcess(t, exec.Command(os.Args[0]), args)
}

// startAgoraInterruptIgnored is startAgora with SIGINT ignored, as a
// non-interactive shell starts the commands it runs in the background
// (agora serve &), so that a Ctrl-C meant for it does not reach them: the
// shell ignores it, and exec keeps what is ignored.
func startAgoraInterruptIgnored(t *testing.T, args ...string) *agoraProcess {
	t.Helper()
	return startProcess(t, exec.Command("/bin/sh", "-c", `trap '' INT; exec "$0"`, os.Args[0]), args)
}

// startProcess starts cmd, which runs this test binary, to be agora with
// args.
func startProcess(t *testing.T, cmd *exec.Cmd, args []string) *agoraProcess {
	t.Helper()
	p := &agoraProcess{cmd: cmd, output: new(testutil.Buffer), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "AGORA_TEST_ARGS="+strings.Join(args, "\n"))
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// stopSignalTimeout is how soon agora must end after a signal that stops
// it while nothing it waits for answers: well under the 10 s that start-up
// gives the database.
const stopSignalTimeout = 5 * time.Second

// said waits until p has said what, failing the test after a minute.
func (p *agoraProcess) said(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(p.output.String(), what) {
		select {
		case <-p.exited:
			t.Fatalf("agora ended (%v) before saying %q\n%s", p.err, what, p.output)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agora did not say %q within a minute\n%s", what, p.output)
		}
	}
}

// terminate sends p SIGTERM and waits for it to exit, failing the test
// after a minute.
func (p *agoraProcess) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		t.Fatalf("agora still running a minute after SIGTERM\n%s", p.output)
	}
}

// killedBy sends sig to p and checks that p ends within stopSignalTimeout,
// killed by sig, as a program that did not catch it, having said want.
func (p *agoraProcess) killedBy(t *testing.T, sig syscall.Signal, want string) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopSignalTimeout):
		t.Fatalf("agora still running %v after %v\n%s", stopSignalTimeout, sig, p.output)
	}
	err := p.err
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("agora ended (%v) after %v; want it killed by it\n%s", err, sig, p.output)
	}
	if ws := exit.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != sig {
		t.Errorf("agora ended (%v) after %v; want it killed by it\n%s", err, sig, p.output)
	}
	if !strings.Contains(p.output.String(), want) {
		t.Errorf("agora said\n%s\nwant %q", p.output, want)
	}
}

// unansweringDatabase returns the URL of a PostgreSQL server that accepts
// connections and never answers (hung, or behind a network partition),
// and a channel that receives each connection it accepts.
func unansweringDatabase(t *testing.T) (url string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			conns <- struct{}{}
		}
	}()
	return "postgres://agora@" + ln.Addr().String() + "/agora?sslmode=disable", conns
}

// within waits for ready, failing the test after a minute.
func within(t *testing.T, p *agoraProcess, what string, ready <-chan struct{}) {
	t.Helper()
	select {
	case <-ready:
	case <-p.exited:
		t.Fatalf("agora ended (%v) before %s\n%s", p.err, what, p.output)
	case <-time.After(time.Minute):
		t.Fatalf("agora did not get to %s within a minute\n%s", what, p.output)
	}
}

// TestStartUpStoppedBySignal checks that a signal stops agora while it
// waits for its database at start: for the answer to its first query, or
// for the migrations' lock, which another process holds. Start-up did not
// heed the signal: a supervisor's SIGTERM (systemctl stop, a pod deleted)
// or a Ctrl-C waited for the 10 s that the database is given, or for as
// long as the other process held the lock. agora ends killed by the
// signal, as a program that did not catch it, saying why.
func TestStartUpStoppedBySignal(t *testing.T) {
	t.Run("serve, database not answering", func(t *testing.T) {
		serveEnv(t)
		url, accepted := unansweringDatabase(t)
		t.Setenv("DATABASE_URL", url)
		p := startAgora(t, "serve")
		within(t, p, "connecting to the database", accepted)
		p.killedBy(t, syscall.SIGTERM, "agora: start-up stopped: terminated signal received: DATABASE_URL=")
	})
	t.Run("serve, migrations locked", func(t *testing.T) {
		serveEnv(t)
		url := modelstest.URL(t, "postgres") // skips without a server
		conn := modelstest.OpenURL(t, url)
		// Another process migrating the database holds the lock.
		held, release := make(chan struct{}), make(chan struct{})
		go models.NewRegistry(conn).Exclusive(context.Background(), "migrate", func(context.Context) error {
			close(held)
			<-release
			return nil
		})
		t.Cleanup(func() { close(release) })
		<-held
		t.Setenv("DATABASE_URL", url)
		p := startAgora(t, "serve")
		waiting := make(chan struct{})
		go func() {
			defer close(waiting)
			for {
				var n int
				err := conn.RawQuery(`SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
					AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).First(&n)
				if err != nil || n > 0 {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		within(t, p, "waiting for the migrations' lock", waiting)
		p.killedBy(t, syscall.SIGTERM, "agora: start-up stopped: terminated signal received: DATABASE_URL=")
	})
	t.Run("import, database not answering", func(t *testing.T) {
		p := importConnecting(t, startAgora)
		p.killedBy(t, syscall.SIGINT, "agora: import interrupted")
	})
}

// importConnecting starts agora import with start on a database that
// never answers, and returns once it is connecting to it.
func importConnecting(t *testing.T, start func(*testing.T, ...string) *agoraProcess) *agoraProcess {
	t.Helper()
	offlineEnv(t)
	url, accepted := unansweringDatabase(t)
	t.Setenv("DATABASE_URL", url)
	p := start(t, "import", t.TempDir())
	within(t, p, "connecting to the database", accepted)
	return p
}

// interruptIgnored reports whether the process pid ignores SIGINT, as its
// /proc/PID/status says; ok is false where there is none (off Linux).
func interruptIgnored(pid int) (ignored, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, false
	}
	for line := range strings.Lines(string(b)) {
		if mask, found := strings.CutPrefix(line, "SigIgn:"); found {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && m&(1<<(syscall.SIGINT-1)) != 0, err == nil
		}
	}
	return false, false
}

// stillIgnoresInterrupt checks that p ignores SIGINT, where the system
// tells, and then that it goes on when sent SIGINT, and stops when sent
// SIGTERM, as stopped checks.
func (p *agoraProcess) stillIgnoresInterrupt(t *testing.T, stopped func()) {
	t.Helper()
	if ignored, ok := interruptIgnored(p.cmd.Process.Pid); ok && !ignored {
		t.Error("agora, started with SIGINT ignored, catches it")
	}
	// A process may handle two signals at once, on two threads, so
	// that it may act on SIGTERM first even when it catches SIGINT:
	// this fails only sometimes when SIGINT is caught, and never when
	// it is ignored (the system then drops it).
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	stopped()
}

// TestInterruptIgnoredStaysIgnored checks that agora started with SIGINT
// ignored, as a shell script's `agora serve &` or `agora import DIR &`,
// leaves it ignored: catching it turned it back on, so that the Ctrl-C
// meant for the script stopped the server or the import in its
// background. SIGTERM still stops them.
func TestInterruptIgnoredStaysIgnored(t *testing.T) {
	t.Run("serve", func(t *testing.T) {
		serveEnv(t)
		p := startAgoraInterruptIgnored(t, "serve")
		p.said(t, `msg="agora listening"`)
		p.stillIgnoresInterrupt(t, func() {
			p.terminate(t)
			if p.err != nil || !strings.Contains(p.output.String(), `cause="terminated signal received"`) {
				t.Errorf("agora ended (%v); want it stopped by SIGTERM, gracefully\n%s", p.err, p.output)
			}
		})
	})
	t.Run("import", func(t *testing.T) {
		p := importConnecting(t, startAgoraInterruptIgnored)
		p.stillIgnoresInterrupt(t, func() {
			p.killedBy(t, syscall.SIGTERM, "agora: import interrupted")
		})
	})
}
