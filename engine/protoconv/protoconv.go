// Package protoconv converts between the engine's types and their wire
// forms in duet's protobuf messages. It is the one place that knows both,
// so the router and the nodes cannot disagree on a field.
package protoconv

import (
	"fmt"

	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/sample"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
)

// Sampling converts sampling parameters to the wire. The seed must be set:
// both nodes of a PD pair sample with it.
func Sampling(p sample.Params) (*commonv1.SamplingParams, error) {
	if p.Seed == nil {
		return nil, fmt.Errorf("protoconv: sampling parameters without a seed")
	}
	return &commonv1.SamplingParams{
		Temperature: p.Temperature, TopK: int32(p.TopK), TopP: p.TopP, MinP: p.MinP,
		PresencePenalty: p.PresencePenalty, FrequencyPenalty: p.FrequencyPenalty,
		RepetitionPenalty: p.RepetitionPenalty, Seed: *p.Seed,
		Logprobs: p.Logprobs, TopLogprobs: int32(p.TopLogprobs),
		StopTokenIds: p.StopTokens, MaxTokens: int32(p.MaxTokens),
	}, nil
}

// SamplingParams converts wire sampling parameters and validates them.
func SamplingParams(w *commonv1.SamplingParams) (sample.Params, error) {
	if w == nil {
		return sample.Params{}, fmt.Errorf("protoconv: missing sampling parameters")
	}
	seed := w.GetSeed()
	p := sample.Params{
		Temperature: w.GetTemperature(), TopK: int(w.GetTopK()), TopP: w.GetTopP(), MinP: w.GetMinP(),
		PresencePenalty: w.GetPresencePenalty(), FrequencyPenalty: w.GetFrequencyPenalty(),
		RepetitionPenalty: w.GetRepetitionPenalty(), Seed: &seed,
		Logprobs: w.GetLogprobs(), TopLogprobs: int(w.GetTopLogprobs()),
		StopTokens: w.GetStopTokenIds(), MaxTokens: int(w.GetMaxTokens()),
	}
	if p.MaxTokens <= 0 {
		return p, fmt.Errorf("protoconv: max_tokens %d must be positive", p.MaxTokens)
	}
	return p, p.Validate()
}

// Layout converts a KV layout (with the kernel the node computes with).
func Layout(l kvcache.Layout, kernel string) *commonv1.KVLayout {
	return &commonv1.KVLayout{Dtype: l.DType.String(), BlockTokens: int32(l.BlockTokens), Layers: int32(l.Layers),
		KvHeads: int32(l.KVHeads), HeadDim: int32(l.HeadDim), Kernel: kernel}
}

// KVLayout converts a wire layout.
func KVLayout(w *commonv1.KVLayout) (kvcache.Layout, string, error) {
	if w == nil {
		return kvcache.Layout{}, "", fmt.Errorf("protoconv: missing KV layout")
	}
	dt, err := kvcache.ParseDType(w.GetDtype())
	if err != nil {
		return kvcache.Layout{}, "", err
	}
	l := kvcache.Layout{DType: dt, BlockTokens: int(w.GetBlockTokens()), Layers: int(w.GetLayers()),
		KVHeads: int(w.GetKvHeads()), HeadDim: int(w.GetHeadDim())}
	return l, w.GetKernel(), l.Validate()
}

// Token converts a sampled token at position index of the completion.
func Token(t sample.Token, index int) *commonv1.Token {
	w := &commonv1.Token{Id: t.ID, Index: int32(index), Logprob: t.Logprob, FinishReason: t.Finish.String()}
	if len(t.TopLogprobs) > 0 {
		w.TopLogprobs = make([]*commonv1.TokenLogprob, len(t.TopLogprobs))
		for i, a := range t.TopLogprobs {
			w.TopLogprobs[i] = &commonv1.TokenLogprob{Id: a.ID, Logprob: a.Logprob}
		}
	}
	return w
}
