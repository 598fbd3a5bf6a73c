// Package enginetest finds the real model files that tests run against.
//
// The models live outside the repository, in ../shared/models beside the
// checkout (they are never copied into it). Tests in any module of the
// workspace call ModelPath to find one.
package enginetest

import (
	"os"
	"path/filepath"
	"testing"
)

// Names of the shared model files (see ../shared/models/README.md).
const (
	Stories260K     = "stories260K.gguf"         // primary fixture: GGUF v3, F32, SPM vocab of 512
	TinyRandomF16   = "llama-2-tiny-random.gguf" // F16 weights, 32000-token Llama-2 vocab
	Stories260KGGv1 = "tinyllamas-stories-260k-f32.ggufv1.gguf"
)

// ModelsDir returns the shared models folder: $DUET_MODELS_DIR when set,
// else ../shared/models beside the workspace root (the folder holding
// go.work), searched upwards from the working directory.
func ModelsDir() (string, bool) {
	if d := os.Getenv("DUET_MODELS_DIR"); d != "" {
		st, err := os.Stat(d)
		return d, err == nil && st.IsDir()
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			d := filepath.Join(dir, "..", "shared", "models")
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				return d, true
			}
			return "", false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// ModelPath returns the path of a shared model file. When the shared folder
// is absent (a checkout without ../shared/models), the test is skipped with
// a message that says so; a missing file inside a present folder fails.
func ModelPath(tb testing.TB, name string) string {
	tb.Helper()
	dir, ok := ModelsDir()
	if !ok {
		tb.Skipf("shared models folder not found (expected ../shared/models beside the checkout, or DUET_MODELS_DIR); skipping test that needs %s", name)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("model %s: %v", name, err)
	}
	return p
}
