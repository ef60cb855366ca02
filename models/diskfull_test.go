package models_test

import (
	"fmt"
	"testing"

	"github.com/lib/pq"

	"agora/models"
	"agora/models/modelstest"
)

// TestDiskFull checks that a database that cannot grow, its disk full, is
// told apart from the other failures, on each driver.
func TestDiskFull(t *testing.T) {
	full := modelstest.SQLiteFullError(t)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"sqlite full", fmt.Errorf("database error on committing or rolling back transaction: %w", full), true},
		{"postgres disk_full", fmt.Errorf("inserting: %w", &pq.Error{Code: "53100"}), true},
		{"postgres too many connections", &pq.Error{Code: "53300"}, false},
		{"postgres unique violation", &pq.Error{Code: "23505"}, false},
		{"not found", models.ErrNotFound, false},
	}
	for _, tt := range tests {
		if got := models.DiskFull(tt.err); got != tt.want {
			t.Errorf("%s: DiskFull(%v) = %v; want %v", tt.name, tt.err, got, tt.want)
		}
	}
	if models.Unavailable(full) {
		t.Errorf("Unavailable(%v) = true; a full disk does not pass by itself", full)
	}
}
