package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesUpToDate fails when the checked-in kernels differ from
// what the generator writes: run go generate in package kernel.
func TestGeneratedFilesUpToDate(t *testing.T) {
	s, g := generate()
	for name, want := range map[string][]byte{"mm_amd64.s": s, "mm_amd64.go": g} {
		got, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./engine/internal/kernel", name)
		}
	}
}
