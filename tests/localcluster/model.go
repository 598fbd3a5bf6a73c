package localcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The default model: llama2.c's stories260K as converted by llama.cpp and
// published in Hugging Face's ggml-org/models repository.
const (
	DefaultModelURL    = "https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf"
	DefaultModelSHA256 = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"
	DefaultModelName   = "stories260K.gguf"
)

// ResolveModel finds the model to run: explicit when set; else the shared
// fixture (shared/models/stories260K.gguf) when present; else the cached
// download in cacheDir, fetching it (with a progress line on progress and
// a checksum check) when missing.
func ResolveModel(ctx context.Context, explicit, sharedDir, cacheDir string, progress io.Writer) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("MODEL=%s: %w", explicit, err)
		}
		return explicit, nil
	}
	if p := filepath.Join(sharedDir, DefaultModelName); sharedDir != "" {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p := filepath.Join(cacheDir, DefaultModelName)
	if sum, err := fileSHA256(p); err == nil && sum == DefaultModelSHA256 {
		return p, nil
	}
	if err := Download(ctx, DefaultModelURL, DefaultModelSHA256, p, progress); err != nil {
		return "", fmt.Errorf("no model: set MODEL=path/to/model.gguf, or allow the download of %s (%w)", DefaultModelURL, err)
	}
	return p, nil
}

// Download fetches url into path (through a temporary file renamed into
// place) and checks its sha256.
func Download(ctx context.Context, url, sha string, path string, progress io.Writer) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("download failed, is there a network? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download: %s", resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	pw := &progressWriter{out: progress, total: resp.ContentLength, name: filepath.Base(path)}
	_, err = io.Copy(io.MultiWriter(tmp, h, pw), resp.Body)
	pw.finish()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("download: checksum %s, want %s", got, sha)
	}
	return os.Rename(tmp.Name(), path)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// progressWriter draws a one-line progress bar.
type progressWriter struct {
	out   io.Writer
	total int64
	n     int64
	name  string
	last  time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.out != nil && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
	return len(b), nil
}

func (p *progressWriter) draw() {
	const width = 30
	if p.total <= 0 {
		fmt.Fprintf(p.out, "\rdownloading %s: %d KiB", p.name, p.n>>10)
		return
	}
	done := int(float64(width) * float64(p.n) / float64(p.total))
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < done {
			bar[i] = '#'
		}
	}
	fmt.Fprintf(p.out, "\rdownloading %s [%s] %3d%% (%d/%d KiB)", p.name, bar, p.n*100/p.total, p.n>>10, p.total>>10)
}

func (p *progressWriter) finish() {
	if p.out != nil {
		p.draw()
		fmt.Fprintln(p.out)
	}
}
