package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/internal/kernel"
	"github.com/duet-llm/duet/engine/internal/parallel"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/llama"
	"github.com/duet-llm/duet/engine/tokenizer"
)

// Errors.
var (
	ErrOptions       = errors.New("engine: invalid options")
	ErrPromptTooLong = errors.New("engine: prompt does not fit the context")
	ErrEmptyPrompt   = errors.New("engine: empty prompt")
)

// Step is one sequence's part of a forward call (see llama.Step).
type Step = llama.Step

// Model is an opened model file: weights (mapped, not copied) and tokenizer.
type Model struct {
	Path string
	// ID names the model to clients: the file name without its extension.
	ID        string
	LM        *llama.Model
	Tokenizer *tokenizer.Tokenizer
	file      *gguf.File
}

// OpenModel opens a GGUF model: its weights stay in a read-only mapping of
// the file until Close.
func OpenModel(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	lm, err := llama.Load(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	tok, err := tokenizer.FromGGUF(&f.Metadata)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("load tokenizer of %s: %w", path, err)
	}
	return &Model{Path: path, ID: modelID(path), LM: lm, Tokenizer: tok, file: f}, nil
}

// Metadata is the model file's metadata.
func (m *Model) Metadata() *gguf.Metadata { return &m.file.Metadata }

// Close unmaps the model file. Nothing of the model may be used afterwards.
func (m *Model) Close() error { return m.file.Close() }

// Options configure an Engine.
type Options struct {
	// KVDType is the element type of the KV cache.
	KVDType kvcache.DType
	// BlockTokens is the number of tokens per KV block (a multiple of 16).
	BlockTokens int
	// KVBlocks is the size of the block pool; when 0, KVMemory decides.
	KVBlocks int
	// KVMemory is the pool's memory budget in bytes (used when KVBlocks is 0).
	KVMemory int64
	// MaxBatchTokens bounds the tokens of one forward call (prefill chunk
	// size and decode batch together).
	MaxBatchTokens int
	// MaxSeqs bounds the sequences of one forward call.
	MaxSeqs int
	// MaxContext bounds a sequence's length (0: the model's context length).
	MaxContext int
	// Workers is the number of compute goroutines (0: GOMAXPROCS).
	Workers int
	// Kernel forces a kernel implementation ("avx512", "avx2", "generic");
	// empty picks the fastest this machine runs.
	Kernel string
}

// DefaultOptions are sized for a laptop: f16 KV, 16-token blocks, 256 MiB of
// KV memory, 512-token batches of up to 64 sequences.
func DefaultOptions() Options {
	return Options{KVDType: kvcache.F16, BlockTokens: 16, KVMemory: 256 << 20, MaxBatchTokens: 512, MaxSeqs: 64}
}

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case o.BlockTokens <= 0 || o.BlockTokens%16 != 0:
		return fmt.Errorf("%w: block tokens %d must be a positive multiple of 16", ErrOptions, o.BlockTokens)
	case o.KVBlocks < 0 || o.KVMemory < 0 || (o.KVBlocks == 0 && o.KVMemory == 0):
		return fmt.Errorf("%w: set KV blocks or a KV memory budget", ErrOptions)
	case o.MaxBatchTokens <= 0 || o.MaxSeqs <= 0:
		return fmt.Errorf("%w: max batch tokens %d, max sequences %d", ErrOptions, o.MaxBatchTokens, o.MaxSeqs)
	case o.MaxContext < 0 || o.Workers < 0:
		return fmt.Errorf("%w: negative max context or workers", ErrOptions)
	}
	return nil
}

// Engine computes with one model over one KV pool. Forward calls are
// serialized; the pool's allocation methods are safe for concurrent use.
type Engine struct {
	mu    sync.Mutex // one forward pass at a time (colocated prefill and decode share an engine)
	model *Model
	opts  Options
	pool  *kvcache.Pool
	par   *parallel.Pool
	state *llama.State
}

// New allocates the KV pool and scratch memory for m.
func New(m *Model, o Options) (*Engine, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Kernel != "" {
		if err := kernel.Use(o.Kernel); err != nil {
			return nil, fmt.Errorf("%w: kernel %q: %v (available: %v)", ErrOptions, o.Kernel, err, kernel.Available())
		}
	}
	lm := m.LM
	layout := kvcache.Layout{DType: o.KVDType, BlockTokens: o.BlockTokens, Layers: lm.Layers, KVHeads: lm.KVHeads, HeadDim: lm.HeadDim}
	if err := layout.Validate(); err != nil {
		return nil, err
	}
	blocks := o.KVBlocks
	if blocks == 0 {
		blocks = kvcache.BlocksForBudget(layout, o.KVMemory)
		if blocks == 0 {
			return nil, fmt.Errorf("%w: a KV budget of %d bytes holds no %d-byte block", ErrOptions, o.KVMemory, layout.BlockBytes())
		}
	}
	pool, err := kvcache.NewPool(layout, blocks)
	if err != nil {
		return nil, err
	}
	workers := o.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	par := parallel.New(workers)
	st, err := llama.NewState(lm, pool, par, llama.StateConfig{MaxTokens: o.MaxBatchTokens, MaxSteps: o.MaxSeqs, MaxContext: o.MaxContext})
	if err != nil {
		par.Close()
		pool.Close()
		return nil, err
	}
	o.MaxContext = st.Config().MaxContext
	o.Workers = workers
	return &Engine{model: m, opts: o, pool: pool, par: par, state: st}, nil
}

// Close releases the pool and stops the workers.
func (e *Engine) Close() error {
	e.par.Close()
	return e.pool.Close()
}

// Model returns the engine's model.
func (e *Engine) Model() *Model { return e.model }

// Options returns the options in effect (defaults filled in).
func (e *Engine) Options() Options { return e.opts }

// Pool is the KV block pool.
func (e *Engine) Pool() *kvcache.Pool { return e.pool }

// Layout is the KV cache layout.
func (e *Engine) Layout() kvcache.Layout { return e.pool.Layout() }

// MaxContext is the most tokens one sequence may hold.
func (e *Engine) MaxContext() int { return e.opts.MaxContext }

// KernelName says which kernel implementation computes. Engines that
// exchange KV must run the same one for bit-identical results.
func KernelName() string { return kernel.Name() }

// Forward runs one batch (see llama.State.Forward).
// Concurrent callers take turns.
func (e *Engine) Forward(steps []Step, onLayer func(layer int)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state.Forward(steps, onLayer)
}

// modelID is the file name without its extension: general.name is often
// a converter default ("llama") that tells clients nothing.
func modelID(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}
