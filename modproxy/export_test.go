package modproxy

import (
	"time"

	"agora/internal/slots"
)

// SetWorkSlots sets how much upstream work of s runs at once, zips and the
// rest, and how much of each may wait for a slot.
func SetWorkSlots(s *Service, zips, small, waiting int) {
	s.zipWork = slots.New("zip fetches", zips, waiting)
	s.smallWork = slots.New("fetches", small, waiting)
}

// ZipWorkWaiting returns how many zip fetches of s wait for a slot.
func ZipWorkWaiting(s *Service) int { return s.zipWork.Waiting() }

// SetListCacheSize sets how many lists s keeps in memory: call it before
// s lists anything.
func SetListCacheSize(s *Service, n int) { s.lists.max = n }

// SetRestoreInfoWait sets how long s waits for an upstream's .info when it
// restores a lost one.
func SetRestoreInfoWait(s *Service, d time.Duration) { s.restoreInfoWait = d }
