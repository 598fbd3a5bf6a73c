package gguf

import (
	"fmt"
	"os"
)

// Open maps the file at path read-only and parses it. The tensor data stays
// in the mapping (the kernel pages it in on first use); Close unmaps it.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open model: %w", err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("open model: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open model %s: not a regular file", path)
	}
	if st.Size() < 8 {
		return nil, fmt.Errorf("open model %s: %w (%d bytes)", path, ErrTruncated, st.Size())
	}
	data, unmap, err := mapFile(fd, st.Size())
	if err != nil {
		return nil, fmt.Errorf("map model %s: %w", path, err)
	}
	f, err := Parse(data)
	if err != nil {
		_ = unmap()
		return nil, fmt.Errorf("read model %s: %w", path, err)
	}
	f.unmap = unmap
	return f, nil
}
