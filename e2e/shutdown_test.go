package e2e

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
)

// slowUpload is an upload whose body the test sends in two halves.
type slowUpload struct {
	body   []byte
	pw     *io.PipeWriter
	status chan int // the response status, or 0 if the request failed
}

// startSlowUpload starts uploading f and returns once agora's handler is
// reading the body: the request carries "Expect: 100-continue", so the
// client sends the first half only after the handler asked for the body.
func startSlowUpload(t *testing.T, s *server, token string, f fixture) *slowUpload {
	t.Helper()
	u := &slowUpload{body: f.zip(t), status: make(chan int, 1)}
	esc, err := module.EscapePath(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	u.pw = pw
	req, err := http.NewRequest(http.MethodPut, s.URL+"/api/v1/modules/"+esc+"/@v/"+f.Version+".zip", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(u.body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Expect", "100-continue")
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			u.status <- 0
			return
		}
		resp.Body.Close()
		u.status <- resp.StatusCode
	}()
	if _, err := pw.Write(u.body[:len(u.body)/2]); err != nil {
		t.Fatalf("sending the first half: %v", err)
	}
	return u
}

// waitListenerClosed waits until the server stops accepting connections,
// which http.Server.Shutdown does first.
func waitListenerClosed(t *testing.T, s *server) {
	t.Helper()
	addr := strings.TrimPrefix(s.URL, "http://")
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(pollInterval)
	}
	t.Fatal("agora still accepts connections after SIGTERM")
}

// An upload in flight when SIGTERM arrives completes before agora exits.
func TestShutdownLetsUploadsFinish(t *testing.T) {
	s := startAgora(t, agoraBinary(t), "sqlite3")
	token := s.createPublisher(t, "alice")
	f := fixtures[0]
	up := startSlowUpload(t, s, token, f)

	s.terminate(t)
	waitListenerClosed(t, s)
	if _, err := up.pw.Write(up.body[len(up.body)/2:]); err != nil {
		t.Fatalf("sending the second half during shutdown: %v", err)
	}
	up.pw.Close()
	if status := <-up.status; status != http.StatusCreated {
		t.Errorf("upload finished during shutdown: status %d, want %d", status, http.StatusCreated)
	}
	if err := s.exited(t); err != nil {
		t.Errorf("agora exited with %v, want status 0\n%s", err, s.log)
	}
	if _, err := os.Stat(filepath.Join(s.StorageDir, "example.com/hello/@v/v1.0.0.zip")); err != nil {
		t.Errorf("the finished upload's zip is not stored: %v", err)
	}
}

// An upload still incomplete when the shutdown timeout runs out is cut off
// and rolled back: nothing of it remains, and it can be sent again.
func TestShutdownRollsBackCutOffUploads(t *testing.T) {
	s := startAgora(t, agoraBinary(t), "sqlite3", "AGORA_SHUTDOWN_TIMEOUT=1s")
	token := s.createPublisher(t, "alice")
	f := fixtures[0]
	up := startSlowUpload(t, s, token, f)

	s.terminate(t)
	err := s.exited(t) // the body never completes
	up.pw.CloseWithError(io.ErrUnexpectedEOF)
	if err == nil || !strings.Contains(s.log.String(), "cut off") {
		t.Errorf("agora exited with %v after cutting off an upload, want a failure that says so\n%s", err, s.log)
	}
	// The operator learns which request was cut off: the request's own
	// log line tells only what its handler answered, to nobody.
	cutOff := regexp.MustCompile(`level=WARN msg="shutdown: cut off a request" method=PUT path=/api/v1/modules/example.com/hello/@v/v1.0.0.zip running=\S+`)
	if !cutOff.MatchString(s.log.String()) {
		t.Errorf("the log does not name the upload that was cut off\n%s", s.log)
	}
	if status := <-up.status; status == http.StatusCreated {
		t.Fatalf("a cut-off upload was created")
	}
	tmp, _ := os.ReadDir(filepath.Join(s.DataDir, "tmp"))
	if len(tmp) != 0 {
		t.Errorf("the cut-off upload left %d files in the data directory's tmp/", len(tmp))
	}
	if _, err := os.Stat(filepath.Join(s.StorageDir, "example.com/hello/@v/v1.0.0.zip")); err == nil {
		t.Error("the cut-off upload's zip is in storage")
	}

	s.start(t, "sqlite3")
	if status, body := s.do(t, http.MethodGet, "/example.com/hello/@v/v1.0.0.info", "", nil, nil); status != http.StatusNotFound {
		t.Errorf("after restart, the cut-off version answers %d, want 404: %s", status, body)
	}
	status, _, _ := s.publish(t, token, f)
	if status != http.StatusCreated {
		t.Errorf("publishing again after the cut-off upload: status %d, want 201", status)
	}
}

// With AGORA_SHUTDOWN_DELAY, agora goes on serving for that long after
// SIGTERM, answering /readyz 503, before it stops accepting connections:
// a load balancer (Kubernetes' endpoints, which keep routing to a pod for
// a few seconds after it was sent SIGTERM) stops sending it requests
// before they would be refused. Its responses then close their
// connections, so that clients on keep-alive connections move to another
// node.
func TestShutdownDelayAnswersNotReady(t *testing.T) {
	const delay = 3 * time.Second
	s := startAgora(t, agoraBinary(t), "sqlite3", "AGORA_SHUTDOWN_DELAY="+delay.String())
	keepAlive := &http.Client{Timeout: time.Minute}
	resp, err := keepAlive.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	s.terminate(t)
	sent := time.Now()
	deadline := sent.Add(delay / 2)
	for {
		status, body := s.do(t, http.MethodGet, "/readyz", "", nil, nil)
		if status == http.StatusServiceUnavailable && strings.Contains(string(body), "shutting down") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz after SIGTERM: status %d, want 503 saying it is shutting down: %s", status, body)
		}
		time.Sleep(pollInterval)
	}
	// Still serving: on a new connection, and on the kept-alive one,
	// which the response closes.
	if status, body := s.do(t, http.MethodGet, "/healthz", "", nil, nil); status != http.StatusOK {
		t.Errorf("GET /healthz during the delay: status %d, want 200: %s", status, body)
	}
	resp, err = keepAlive.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz on a kept-alive connection during the delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("GET /healthz on a kept-alive connection during the delay: status %d, Connection: close %v; want 200, closed", resp.StatusCode, resp.Close)
	}

	waitListenerClosed(t, s)
	if d := time.Since(sent); d < delay {
		t.Errorf("agora stopped accepting connections %v after SIGTERM, before its delay of %v", d, delay)
	}
	if err := s.exited(t); err != nil {
		t.Errorf("agora exited with %v, want status 0\n%s", err, s.log)
	}
}
