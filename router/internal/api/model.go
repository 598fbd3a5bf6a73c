package api

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/tokenizer"
)

// LoadModel reads what the router needs of a model from its GGUF file: the
// tokenizer, the chat template and the context length (never the weights:
// the file is mapped, its metadata read, and unmapped). An empty id
// becomes the file name without ".gguf". This is for main; New does no I/O.
func LoadModel(id, path string) (Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return Model{}, err
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(&f.Metadata)
	if err != nil {
		return Model{}, fmt.Errorf("tokenizer of %s: %w", path, err)
	}
	arch, err := f.Metadata.String("general.architecture")
	if err != nil {
		return Model{}, fmt.Errorf("model %s: %w", path, err)
	}
	n, err := f.Metadata.Uint(arch + ".context_length")
	if err != nil {
		return Model{}, fmt.Errorf("model %s: %w", path, err)
	}
	if n < 2 || n > 1<<30 {
		return Model{}, fmt.Errorf("model %s: context length %d out of range", path, n)
	}
	if id == "" {
		id = strings.TrimSuffix(filepath.Base(path), ".gguf")
	}
	return Model{ID: id, Tokenizer: tok, ContextLength: int(n), ChatTemplate: tok.ChatTemplate()}, nil
}
