package tokenizer

import (
	"strings"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
)

// BenchmarkEncode reports encode throughput (MB/s of input text) on a few
// KiB of English, for both kinds of tokenizer.
func BenchmarkEncode(b *testing.B) {
	text := strings.Repeat(englishText, 2)
	long := strings.Repeat(englishText, 8) // 16 KiB: one long SPM symbol chain
	for _, c := range []struct {
		name string
		tk   func(testing.TB) *Tokenizer
		text string
	}{
		{"spm-llama2", func(tb testing.TB) *Tokenizer { return loadModel(tb, enginetest.TinyRandomF16) }, text},
		{"spm-llama2-16KiB", func(tb testing.TB) *Tokenizer { return loadModel(tb, enginetest.TinyRandomF16) }, long},
		{"spm-stories260K", func(tb testing.TB) *Tokenizer { return loadModel(tb, enginetest.Stories260K) }, text},
		{"bpe-llama3", func(tb testing.TB) *Tokenizer { return trainedVocab("llama-bpe").build(tb) }, text},
		{"bpe-qwen2", func(tb testing.TB) *Tokenizer { return trainedVocab("qwen2").build(tb) }, text},
		{"bpe-qwen2-nocache", func(tb testing.TB) *Tokenizer {
			tk := trainedVocab("qwen2").build(tb)
			tk.cache = nil // every word merged: the cost of unseen text
			return tk
		}, text},
		{"bpe-llama3-16KiB", func(tb testing.TB) *Tokenizer { return trainedVocab("llama-bpe").build(tb) }, long},
	} {
		b.Run(c.name, func(b *testing.B) {
			tk := c.tk(b)
			n := len(tk.Encode(c.text, false))
			b.SetBytes(int64(len(c.text)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				tk.Encode(c.text, false)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkDecoderPush reports the streaming detokenizer's cost per token.
func BenchmarkDecoderPush(b *testing.B) {
	for _, c := range []struct {
		name string
		tk   func(testing.TB) *Tokenizer
	}{
		{"spm-llama2", func(tb testing.TB) *Tokenizer { return loadModel(tb, enginetest.TinyRandomF16) }},
		{"bpe-llama3", func(tb testing.TB) *Tokenizer { return trainedVocab("llama-bpe").build(tb) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			tk := c.tk(b)
			ids := tk.Encode(englishText+"日本語のテキスト 🦙", false)
			d := tk.NewContinuationDecoder()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, id := range ids {
					d.Push(id)
				}
				d.Flush()
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/float64(len(ids)), "ns/token")
		})
	}
}
