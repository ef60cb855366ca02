package actions

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestBuffaloLogger checks that what Buffalo logs goes to Agora's log, at
// the level Buffalo meant, with its fields, filtered by Agora's level: it
// went to standard output in logrus's own format, whatever
// AGORA_LOG_FORMAT said.
func TestBuffaloLogger(t *testing.T) {
	var buf bytes.Buffer
	l := buffaloLogger{slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Debugf("not %s", "logged")
	l.Infof("started %d", 1)
	l.WithField("route", "/x").Warn("slow ", "route")
	l.WithFields(map[string]any{"b": 2, "a": 1}).Errorf("failed: %v", "boom")
	func() {
		defer func() {
			if v := recover(); v != "fatal: 3" {
				t.Errorf("Fatalf panicked with %v; want its message", v)
			}
		}()
		l.Fatalf("fatal: %d", 3)
	}()

	type record struct {
		Level, Msg, Route string
		A, B              int
	}
	want := []record{
		{Level: "INFO", Msg: "started 1"},
		{Level: "WARN", Msg: "slow route", Route: "/x"},
		{Level: "ERROR", Msg: "failed: boom", A: 1, B: 2},
		{Level: "ERROR", Msg: "fatal: 3"},
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines; want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		var got record
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		if got != want[i] {
			t.Errorf("line %d = %+v; want %+v", i, got, want[i])
		}
	}
	if strings.Index(lines[2], `"a"`) > strings.Index(lines[2], `"b"`) {
		t.Errorf("fields out of order: %s", lines[2])
	}
}
