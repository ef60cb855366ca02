package actions

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/gobuffalo/logger"
)

// buffaloLogger is Buffalo's logger on Agora's: what Buffalo logs itself
// (a failure of an error handler, its warnings) goes where the rest of the
// log goes, in its format (AGORA_LOG_FORMAT) and from its level
// (AGORA_LOG_LEVEL), instead of to standard output in logrus's format.
type buffaloLogger struct{ log *slog.Logger }

var _ logger.FieldLogger = buffaloLogger{}

func (l buffaloLogger) WithField(key string, value any) logger.FieldLogger {
	return buffaloLogger{l.log.With(key, value)}
}

func (l buffaloLogger) WithFields(fields map[string]any) logger.FieldLogger {
	args := make([]any, 0, 2*len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) { // in the same order every time
		args = append(args, k, fields[k])
	}
	return buffaloLogger{l.log.With(args...)}
}

func (l buffaloLogger) logf(level slog.Level, format string, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l buffaloLogger) logs(level slog.Level, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprint(args...))
	}
}

func (l buffaloLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args) }
func (l buffaloLogger) Infof(format string, args ...any)  { l.logf(slog.LevelInfo, format, args) }
func (l buffaloLogger) Printf(format string, args ...any) { l.logf(slog.LevelInfo, format, args) }
func (l buffaloLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args) }
func (l buffaloLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args) }
func (l buffaloLogger) Debug(args ...any)                 { l.logs(slog.LevelDebug, args) }
func (l buffaloLogger) Info(args ...any)                  { l.logs(slog.LevelInfo, args) }
func (l buffaloLogger) Warn(args ...any)                  { l.logs(slog.LevelWarn, args) }
func (l buffaloLogger) Error(args ...any)                 { l.logs(slog.LevelError, args) }

// Fatalf, Fatal and Panic log at the error level and panic: logrus's Fatal
// would end the process, which only package main may do here, and in a
// handler net/http recovers the panic, ending only its request.
func (l buffaloLogger) Fatalf(format string, args ...any) {
	l.logf(slog.LevelError, format, args)
	panic(fmt.Sprintf(format, args...))
}

func (l buffaloLogger) Fatal(args ...any) {
	l.logs(slog.LevelError, args)
	panic(fmt.Sprint(args...))
}

func (l buffaloLogger) Panic(args ...any) {
	l.logs(slog.LevelError, args)
	panic(fmt.Sprint(args...))
}
