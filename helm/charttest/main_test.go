package charttest

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if imageBuild.root != "" {
		os.RemoveAll(imageBuild.root)
	}
	os.Exit(code)
}
