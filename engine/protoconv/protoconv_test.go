package protoconv

import (
	"testing"

	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/sample"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
)

func TestSamplingRoundTrip(t *testing.T) {
	seed := uint64(42)
	p := sample.DefaultParams()
	p.Temperature, p.TopK, p.TopP, p.MinP, p.Seed, p.MaxTokens = 0.7, 40, 0.9, 0.05, &seed, 17
	p.PresencePenalty, p.FrequencyPenalty, p.Logprobs, p.TopLogprobs, p.StopTokens = 0.5, -0.5, true, 3, []int32{2}
	w, err := Sampling(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := SamplingParams(w)
	if err != nil {
		t.Fatal(err)
	}
	if *q.Seed != 42 || q.Temperature != 0.7 || q.TopK != 40 || q.MaxTokens != 17 || q.TopLogprobs != 3 || len(q.StopTokens) != 1 {
		t.Fatalf("%+v", q)
	}
	p.Seed = nil
	if _, err := Sampling(p); err == nil {
		t.Error("missing seed accepted")
	}
	for _, bad := range []*commonv1.SamplingParams{nil, {TopP: 1, RepetitionPenalty: 1}, {TopP: 1, RepetitionPenalty: 1, MaxTokens: 5, Temperature: 9}} {
		if _, err := SamplingParams(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestLayoutRoundTrip(t *testing.T) {
	l := kvcache.Layout{DType: kvcache.I8, BlockTokens: 32, Layers: 5, KVHeads: 4, HeadDim: 8}
	got, kernel, err := KVLayout(Layout(l, "avx2"))
	if err != nil || got != l || kernel != "avx2" {
		t.Fatalf("%v %q %v", got, kernel, err)
	}
	if _, _, err := KVLayout(&commonv1.KVLayout{Dtype: "f64"}); err == nil {
		t.Error("bad dtype accepted")
	}
	if _, _, err := KVLayout(&commonv1.KVLayout{Dtype: "f16", BlockTokens: 7, Layers: 1, KvHeads: 1, HeadDim: 1}); err == nil {
		t.Error("bad block size accepted")
	}
}
