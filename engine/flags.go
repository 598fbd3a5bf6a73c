package engine

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/duet-llm/duet/engine/kvcache"
)

// AddFlags registers the engine options on fs, with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.Var((*kvDTypeFlag)(&o.KVDType), "kv-dtype", "KV cache element type: f32, f16 or int8")
	fs.IntVar(&o.BlockTokens, "block-tokens", o.BlockTokens, "tokens per KV block (a multiple of 16)")
	fs.IntVar(&o.KVBlocks, "kv-blocks", o.KVBlocks, "KV blocks in the pool (0: size the pool by --kv-memory)")
	fs.Var((*ByteSize)(&o.KVMemory), "kv-memory", "KV pool memory budget, e.g. 512MiB or 8GiB (used when --kv-blocks is 0)")
	fs.IntVar(&o.MaxBatchTokens, "max-batch-tokens", o.MaxBatchTokens, "tokens per forward pass (prefill chunk and decode batch)")
	fs.IntVar(&o.MaxSeqs, "max-seqs", o.MaxSeqs, "sequences per forward pass")
	fs.IntVar(&o.MaxContext, "max-context", o.MaxContext, "longest sequence in tokens (0: the model's context length)")
	fs.IntVar(&o.Workers, "threads", o.Workers, "compute goroutines (0: GOMAXPROCS)")
	fs.StringVar(&o.Kernel, "kernel", o.Kernel, "force a kernel implementation: avx512, avx2 or generic (empty: fastest available)")
}

type kvDTypeFlag kvcache.DType

func (f *kvDTypeFlag) String() string { return kvcache.DType(*f).String() }
func (f *kvDTypeFlag) Set(s string) error {
	d, err := kvcache.ParseDType(s)
	*f = kvDTypeFlag(d)
	return err
}

// ByteSize is a byte count flag that accepts units: 1048576, 512KiB,
// 256MiB, 8GiB, 1TiB (and KB/MB/GB/TB as powers of ten).
type ByteSize int64

func (b *ByteSize) String() string { return FormatBytes(int64(*b)) }

// Set parses a size.
func (b *ByteSize) Set(s string) error {
	n, err := ParseBytes(s)
	*b = ByteSize(n)
	return err
}

var units = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}

// ParseBytes parses a byte count with an optional unit.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q (examples: 1048576, 512MiB, 8GiB)", s)
	}
	return int64(n * float64(mult)), nil
}

// FormatBytes prints a byte count with a binary unit.
func FormatBytes(n int64) string {
	for _, u := range units[:4] {
		if n >= u.mult {
			v := float64(n) / float64(u.mult)
			if v == float64(int64(v)) {
				return fmt.Sprintf("%d%s", int64(v), u.suffix)
			}
			return fmt.Sprintf("%.1f%s", v, u.suffix)
		}
	}
	return strconv.FormatInt(n, 10)
}
