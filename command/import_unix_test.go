//go:build unix

package command

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestImportInterruptedBySignal checks that agora import, stopped by
// Ctrl-C, ends killed by SIGINT once it has finished the version in
// progress, as a program that does not catch the signal is: it exited 1,
// and bash, which takes a command that exits after SIGINT to have handled
// it, went on with the script that ran it (the next import of a loop).
func TestImportInterruptedBySignal(t *testing.T) {
	if dir := os.Getenv("AGORA_TEST_IMPORT_DIR"); dir != "" {
		// The agora process the test interrupts.
		os.Exit(runMain(context.Background(), []string{"import", dir}, os.Stdin, os.Stdout, os.Stderr))
	}
	offlineEnv(t)
	cache := t.TempDir()
	dl := filepath.Join(cache, "cache", "download")
	// The first version's .info is a pipe: the import waits on it, in
	// the middle of that version, until the test writes it.
	zip := writeCachedVersion(t, dl, "example.com/a", "v1.0.0")
	info := strings.TrimSuffix(zip, ".zip") + ".info"
	if err := os.Remove(info); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(info, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1.0.0", "v1.0.1", "v1.0.2", "v1.0.3", "v1.0.4", "v1.0.5", "v1.0.6", "v1.0.7", "v1.0.8", "v1.0.9"} {
		writeCachedVersion(t, dl, "example.com/b", v)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestImportInterruptedBySignal$")
	cmd.Env = append(os.Environ(), "AGORA_TEST_IMPORT_DIR="+cache)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	opened := make(chan *os.File, 1)
	go func() { // returns once the import opens the pipe to read it
		f, err := os.OpenFile(info, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	var err error
	select {
	case f := <-opened:
		if f == nil {
			t.FailNow()
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}`)
		f.Close()
		err = <-exited
	case err = <-exited:
		t.Fatalf("agora import ended (%v) before reading the first .info\n%s%s", err, stdout.String(), stderr.String())
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("agora import did not read the first .info in a minute\n%s%s", stdout.String(), stderr.String())
	}

	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("agora import interrupted: %v; want it killed by SIGINT\n%s%s", err, stdout.String(), stderr.String())
	}
	if ws := exit.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("agora import interrupted: %v; want it killed by SIGINT\n%s%s", err, stdout.String(), stderr.String())
	}
	if want := "[1/11] example.com/a@v1.0.0 imported\n"; !strings.HasPrefix(stdout.String(), want) || strings.Contains(stdout.String(), "example.com/b@v1.0.9") {
		t.Errorf("agora import interrupted printed\n%s\nwant %q, the version in progress, and not the last", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "agora: import interrupted: run it again") {
		t.Errorf("agora import interrupted said\n%s\nwant it to say to run it again", stderr.String())
	}
}
