//go:build unix

package storage

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// openFile opens name for reading. os.Open offers every file it opens to the
// runtime's network poller, which Linux refuses for regular files, setting
// and clearing the file's non-blocking flag around the attempt: five system
// calls per open, for nothing, on the path of every .zip served. A
// descriptor opened here stays blocking, as a regular file is, and
// os.NewFile leaves it so.
func openFile(name string) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}
