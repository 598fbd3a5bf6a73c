package api

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// readSeeds reads a go-fuzz corpus folder of single []byte values.
func readSeeds(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			return nil, os.ErrInvalid
		}
		lit := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
		s, err := strconv.Unquote(lit)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
