package tcp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// The end-to-end check of the KV path: prefill a sequence in one
// engine instance, ship its KV layer by layer (from the engine's onLayer
// callback, while later layers compute) through the real TCP transport into
// blocks another instance reserved, and decode there: every logit of every
// step is bit-identical to decoding in the first instance.
func TestEngineKVShippedLayerByLayer(t *testing.T) {
	path := enginetest.ModelPath(t, enginetest.Stories260K)
	const (
		decodeSteps = 24
		blockTokens = 16
	)
	for _, dt := range []kvcache.DType{kvcache.F32, kvcache.F16, kvcache.I8} {
		t.Run(dt.String(), func(t *testing.T) {
			opts := engine.Options{KVDType: dt, BlockTokens: blockTokens, KVBlocks: 48, MaxBatchTokens: 128, MaxSeqs: 2, Workers: 2}
			prefill := newEngine(t, path, opts)
			decode := newEngine(t, path, opts)
			layout := decode.Layout()
			vocab := prefill.Model().LM.Vocab

			// A prompt of several blocks, the last one partly filled.
			prompt := prefill.Model().Encode("Once upon a time, there was a little girl named Lily. She loved to play in the park with her big red ball and her friends.")
			if layout.BlocksFor(len(prompt)) < 3 || len(prompt)%blockTokens == 0 {
				t.Fatalf("prompt of %d tokens does not exercise several blocks and a partial one", len(prompt))
			}
			nb := layout.BlocksFor(len(prompt))

			// The decode node's side: blocks for prompt and decode, taken
			// after others so the two instances' block ids differ, and a
			// reservation of the prompt's (layer, block) slots, layer-major.
			if _, err := decode.Pool().Alloc(5); err != nil {
				t.Fatal(err)
			}
			seqD := &kvcache.Seq{}
			if err := decode.Pool().Grow(seqD, len(prompt)+decodeSteps); err != nil {
				t.Fatal(err)
			}
			recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, nil)
			t.Cleanup(recv.Close)
			region, err := recv.RegisterRegion(decode.Pool().Arena())
			if err != nil {
				t.Fatal(err)
			}
			lb := kvtransfertest.NewLoopback(t, recv, tcp.ServerConfig{}, tcp.Config{Conns: 2})
			slots := make([]kvtransfer.Slot, 0, layout.Layers*nb)
			for l := range layout.Layers {
				for b := range nb {
					slots = append(slots, kvtransfer.Slot{Region: region, Offset: uint64(decode.Pool().SlotOffset(l, seqD.Blocks[b])), Length: uint32(layout.SlotBytes())})
				}
			}
			res, err := recv.Reserve(slots, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			d := res.Descriptor()

			// The prefill node's side: one forward pass over the prompt,
			// each layer's slots written as soon as the layer's K and V are
			// in the cache; commit with the first token once all is done.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			seqP := &kvcache.Seq{}
			if err := prefill.Pool().Grow(seqP, len(prompt)+decodeSteps); err != nil {
				t.Fatal(err)
			}
			sess, err := lb.Transport.Open(ctx, &d)
			if err != nil {
				t.Fatal(err)
			}
			var shipped []int
			var werr error
			logitsP := make([]float32, vocab)
			err = prefill.Forward([]engine.Step{{Seq: seqP, Tokens: prompt, Logits: logitsP}}, func(layer int) {
				shipped = append(shipped, layer)
				for b := range nb {
					if err := sess.Write(ctx, layer*nb+b, 0, prefill.Pool().Slot(layer, seqP.Blocks[b])); err != nil && werr == nil {
						werr = err
					}
				}
			})
			if err != nil || werr != nil {
				t.Fatalf("prefill: %v, write: %v", err, werr)
			}
			if len(shipped) != layout.Layers {
				t.Fatalf("shipped layers %v, want %d", shipped, layout.Layers)
			}
			first := argmax(logitsP)
			payload := binary.LittleEndian.AppendUint32(nil, uint32(first))
			payload = binary.LittleEndian.AppendUint32(payload, uint32(len(prompt)))
			if err := sess.Commit(ctx, payload); err != nil {
				t.Fatalf("commit: %v", err)
			}
			out, err := res.Wait(ctx)
			if err != nil || out.State != kvtransfer.StateCommitted || !bytes.Equal(out.Payload, payload) || out.Bytes != d.Size() {
				t.Fatalf("outcome %+v %v", out, err)
			}

			// Every shipped slot holds the prefill's bytes; every other byte
			// of the decode instance's pool is still zero.
			for l := range layout.Layers {
				for b := range nb {
					if !bytes.Equal(decode.Pool().Slot(l, seqD.Blocks[b]), prefill.Pool().Slot(l, seqP.Blocks[b])) {
						t.Fatalf("layer %d block %d: slot bytes differ", l, b)
					}
				}
			}
			if err := zeroOutside(decode.Pool().Arena(), slots); err != nil {
				t.Fatal(err)
			}

			// Decode greedily in both instances from the committed state.
			seqD.Len = int(binary.LittleEndian.Uint32(payload[4:]))
			tokP, tokD := first, int32(binary.LittleEndian.Uint32(payload))
			logitsD := make([]float32, vocab)
			var text []int32
			var step0 []float32
			for step := range decodeSteps {
				if err := prefill.Forward([]engine.Step{{Seq: seqP, Tokens: []int32{tokP}, Logits: logitsP}}, nil); err != nil {
					t.Fatal(err)
				}
				if err := decode.Forward([]engine.Step{{Seq: seqD, Tokens: []int32{tokD}, Logits: logitsD}}, nil); err != nil {
					t.Fatal(err)
				}
				if i, ok := sameBits(logitsP, logitsD); !ok {
					t.Fatalf("step %d: logit %d differs: %v (prefill instance) vs %v (decode instance)", step, i, logitsP[i], logitsD[i])
				}
				if step == 0 {
					step0 = append(step0, logitsD...)
				}
				tokP, tokD = argmax(logitsP), argmax(logitsD)
				text = append(text, tokD)
			}
			t.Logf("%s: %d prompt tokens in %d blocks, %d KiB shipped in %d slots; decoded %q", dt, len(prompt), nb,
				d.Size()>>10, len(slots), prefill.Model().Tokenizer.Decode(text))

			// The check can fail: a sequence that claims the prompt but
			// holds none of its KV decodes differently from the first step.
			seqX := &kvcache.Seq{}
			if err := decode.Pool().Grow(seqX, len(prompt)+1); err != nil {
				t.Fatal(err)
			}
			seqX.Len = len(prompt)
			if err := decode.Forward([]engine.Step{{Seq: seqX, Tokens: []int32{first}, Logits: logitsD}}, nil); err != nil {
				t.Fatal(err)
			}
			if _, ok := sameBits(step0, logitsD); ok {
				t.Fatal("decoding without the shipped KV gave the same logits: the comparison cannot tell")
			}
		})
	}
}

func newEngine(t *testing.T, path string, opts engine.Options) *engine.Engine {
	t.Helper()
	m, err := engine.OpenModel(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	e, err := engine.New(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// sameBits reports whether a and b are bit-identical, or the first index
// where they differ.
func sameBits(a, b []float32) (int, bool) {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i, false
		}
	}
	return 0, true
}

// zeroOutside reports the first nonzero byte of mem outside slots.
func zeroOutside(mem []byte, slots []kvtransfer.Slot) error {
	inside := make([]bool, len(mem))
	for _, s := range slots {
		for i := s.Offset; i < s.End(); i++ {
			inside[i] = true
		}
	}
	for i, b := range mem {
		if b != 0 && !inside[i] {
			return fmt.Errorf("pool byte %d outside the reserved slots was written (%#x)", i, b)
		}
	}
	return nil
}
