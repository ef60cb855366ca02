package modproxy

// SetWorkSlots sets how much upstream work of s runs at once, zips and the
// rest, and how much of each may wait for a slot.
func SetWorkSlots(s *Service, zips, small, waiting int) {
	s.zipWork = newWorkSlots("zip fetches", zips, waiting)
	s.smallWork = newWorkSlots("fetches", small, waiting)
}

// ZipWorkWaiting returns how many zip fetches of s wait for a slot.
func ZipWorkWaiting(s *Service) int { return int(s.zipWork.waiting.Load()) }

// SetListCacheSize sets how many lists s keeps in memory: call it before
// s lists anything.
func SetListCacheSize(s *Service, n int) { s.lists.max = n }
