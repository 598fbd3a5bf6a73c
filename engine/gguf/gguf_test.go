package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
)

func TestOpenStories260K(t *testing.T) {
	f, err := Open(enginetest.ModelPath(t, enginetest.Stories260K))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Version != 3 || len(f.Tensors) != 48 || len(f.Metadata.Keys()) != 19 {
		t.Fatalf("version %d tensors %d kvs %d", f.Version, len(f.Tensors), len(f.Metadata.Keys()))
	}
	if f.DataOffset != 14176 {
		t.Errorf("data offset %d, want 14176", f.DataOffset)
	}
	if arch, err := f.Metadata.String("general.architecture"); err != nil || arch != "llama" {
		t.Errorf("architecture %q %v", arch, err)
	}
	if n, err := f.Metadata.Uint("llama.embedding_length"); err != nil || n != 64 {
		t.Errorf("embedding_length %d %v", n, err)
	}
	if eps, err := f.Metadata.Float("llama.attention.layer_norm_rms_epsilon"); err != nil || eps != float64(float32(1e-5)) {
		t.Errorf("eps %v %v", eps, err)
	}
	toks, err := f.Metadata.Strings("tokenizer.ggml.tokens")
	if err != nil || len(toks) != 512 || toks[0] != "<unk>" || toks[1] != "<s>" {
		t.Fatalf("tokens %d %v", len(toks), err)
	}
	types, err := f.Metadata.Int32s("tokenizer.ggml.token_type")
	if err != nil || len(types) != 512 || types[0] != 2 || types[1] != 3 {
		t.Fatalf("token types %v", err)
	}
	// sep id is 0xFFFFFFFF: as Uint it is fine, as Int it is too.
	if v, err := f.Metadata.Uint("tokenizer.ggml.seperator_token_id"); err != nil || v != 0xFFFFFFFF {
		t.Errorf("sep %d %v", v, err)
	}
	if _, err := f.Metadata.String("llama.block_count"); !errors.Is(err, ErrWrongType) {
		t.Errorf("wrong-type access: %v", err)
	}
	if _, err := f.Metadata.Uint("no.such.key"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("missing key: %v", err)
	}
	q, err := f.Tensor("blk.0.attn_k.weight")
	if err != nil {
		t.Fatal(err)
	}
	if q.Type != TypeF32 || len(q.Dims) != 2 || q.Dims[0] != 64 || q.Dims[1] != 32 || q.Size != 64*32*4 || len(q.Data) != int(q.Size) {
		t.Errorf("attn_k %+v", q.Dims)
	}
	// output.weight and token_embd.weight hold the same bytes in this file.
	emb, _ := f.Tensor("token_embd.weight")
	out, _ := f.Tensor("output.weight")
	if !bytes.Equal(emb.Data, out.Data) {
		t.Error("output.weight differs from token_embd.weight")
	}
	if _, err := f.Tensor("nope"); !errors.Is(err, ErrTensorNotFound) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestOpenF16Model(t *testing.T) {
	f, err := Open(enginetest.ModelPath(t, enginetest.TinyRandomF16))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	emb, err := f.Tensor("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	if emb.Type != TypeF16 || emb.Dims[0] != 8 || emb.Dims[1] != 32000 || emb.Size != 8*32000*2 {
		t.Errorf("token_embd %v %v size %d", emb.Type, emb.Dims, emb.Size)
	}
	if f.DataOffset != 724416 {
		t.Errorf("data offset %d", f.DataOffset)
	}
}

func TestRefusesVersion1(t *testing.T) {
	_, err := Open(enginetest.ModelPath(t, enginetest.Stories260KGGv1))
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("v1 file: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("directory accepted")
	}
	empty := filepath.Join(dir, "empty.gguf")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); !errors.Is(err, ErrTruncated) {
		t.Errorf("empty file: %v", err)
	}
}

// sample builds a small file with every value type and a few tensors.
func sample(t testing.TB) []byte {
	var w Writer
	set := func(k string, v any) {
		if err := w.Metadata.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	set("general.architecture", "llama")
	set("u8", uint8(7))
	set("i8", int8(-7))
	set("u16", uint16(700))
	set("i16", int16(-700))
	set("u32", uint32(70000))
	set("i32", int32(-70000))
	set("f32", float32(1.5))
	set("b", true)
	set("u64", uint64(1<<40))
	set("i64", int64(-1<<40))
	set("f64", 2.25)
	set("strs", []string{"a", "bc", ""})
	set("f32s", []float32{1, 2, 3})
	set("i32s", []int32{-1, 2})
	set("bools", []bool{true, false})
	set("nested", Value{Type: ValueArray, Elem: ValueArray, v: []Value{{Type: ValueArray, Elem: ValueUint8, v: []uint8{1, 2}}}})
	f32 := make([]byte, 4*4*2)
	for i := range f32 {
		f32[i] = byte(i)
	}
	if err := w.AddTensorBytes("t.alpha", TypeF32, []uint64{4, 2}, f32); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensorBytes("t.beta", TypeF16, []uint64{3}, []byte{1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensorBytes("t.q8", TypeQ8_0, []uint64{32, 1}, bytes.Repeat([]byte{9}, 34)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriterRoundTrip(t *testing.T) {
	b := sample(t)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	md := &f.Metadata
	if v, _ := md.Int("i64"); v != -1<<40 {
		t.Errorf("i64 %d", v)
	}
	if v, _ := md.Uint("u64"); v != 1<<40 {
		t.Errorf("u64 %d", v)
	}
	if _, err := md.Uint("i8"); !errors.Is(err, ErrWrongType) {
		t.Errorf("negative as uint: %v", err)
	}
	if v, _ := md.Float("f64"); v != 2.25 {
		t.Errorf("f64 %v", v)
	}
	if v, _ := md.Bool("b"); !v {
		t.Error("bool")
	}
	if s, _ := md.Strings("strs"); len(s) != 3 || s[1] != "bc" || s[2] != "" {
		t.Errorf("strs %q", s)
	}
	if v, ok := md.Lookup("nested"); !ok || v.Len() != 1 || v.Any().([]Value)[0].Len() != 2 {
		t.Errorf("nested %v", v)
	}
	if got := strings.Join(md.Keys(), ","); !strings.HasPrefix(got, "general.architecture,u8,i8") {
		t.Errorf("key order %s", got)
	}
	a, _ := f.Tensor("t.alpha")
	if a.Data[5] != 5 || a.Offset != 0 || f.DataOffset%32 != 0 {
		t.Errorf("tensor a: %v offset %d", a.Data[:8], a.Offset)
	}
	q, _ := f.Tensor("t.q8")
	if q.Size != 34 || q.Offset%32 != 0 || q.Data[33] != 9 {
		t.Errorf("tensor q %+v", *q)
	}
	// Writing the parsed file again gives the same bytes.
	var w Writer
	for _, k := range md.Keys() {
		v, _ := md.Lookup(k)
		w.Metadata.Set(k, v)
	}
	for _, t2 := range f.Tensors {
		w.AddTensorBytes(t2.Name, t2.Type, t2.Dims, t2.Data)
	}
	var buf bytes.Buffer
	w.WriteTo(&buf)
	if !bytes.Equal(buf.Bytes(), b) {
		t.Error("rewrite differs")
	}
}

func TestWriterRefusesBadTensors(t *testing.T) {
	var w Writer
	if err := w.AddTensorBytes("x", TypeF32, []uint64{2}, []byte{1}); err == nil {
		t.Error("short data accepted")
	}
	if err := w.AddTensorBytes("x", TypeQ8_0, []uint64{31}, make([]byte, 34)); err == nil {
		t.Error("partial block accepted")
	}
	if err := w.AddTensor("x", Type(99), []uint64{1}, nil); err == nil {
		t.Error("unknown type accepted")
	}
	if err := w.AddTensorBytes("x", TypeF32, []uint64{1}, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensorBytes("x", TypeF32, []uint64{1}, make([]byte, 4)); err == nil {
		t.Error("duplicate accepted")
	}
}

func TestTruncatedEverywhere(t *testing.T) {
	files := [][]byte{sample(t)}
	if dir, ok := enginetest.ModelsDir(); ok {
		b, err := os.ReadFile(filepath.Join(dir, enginetest.Stories260K))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	for _, b := range files {
		f, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		last := f.Tensors[len(f.Tensors)-1]
		end := int(f.DataOffset + last.Offset + last.Size)
		step := 1
		if len(b) > 1<<16 {
			step = 97 // every offset in the header region is checked below
		}
		for n := 0; n < end; n += step {
			if _, err := Parse(b[:n]); err == nil {
				t.Fatalf("truncated at %d of %d: no error", n, len(b))
			}
		}
		for n := 0; n < int(f.DataOffset); n++ {
			if _, err := Parse(b[:n]); err == nil {
				t.Fatalf("truncated at %d: no error", n)
			}
		}
	}
}

func TestHostileHeaders(t *testing.T) {
	good := sample(t)
	le := binary.LittleEndian
	mutate := func(fn func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		fn(b)
		return b
	}
	// Offsets in the sample: magic 0, version 4, n_tensors 8, n_kv 16,
	// first key length 24, key "general.architecture" 32..52, type 52, string len 56.
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"wrong magic", mutate(func(b []byte) { copy(b, "GGML") }), ErrBadMagic},
		{"short", []byte("GGU"), ErrBadMagic},
		{"version 1", mutate(func(b []byte) { le.PutUint32(b[4:], 1) }), ErrVersion},
		{"version 4", mutate(func(b []byte) { le.PutUint32(b[4:], 4) }), ErrVersion},
		{"big endian", mutate(func(b []byte) { binary.BigEndian.PutUint32(b[4:], 3) }), ErrVersion},
		{"huge tensor count", mutate(func(b []byte) { le.PutUint64(b[8:], 1<<62) }), ErrCorrupt},
		{"huge kv count", mutate(func(b []byte) { le.PutUint64(b[16:], 1<<60) }), ErrCorrupt},
		{"huge key length", mutate(func(b []byte) { le.PutUint64(b[24:], 1<<63) }), ErrTruncated},
		{"unknown value type", mutate(func(b []byte) { le.PutUint32(b[52:], 77) }), ErrCorrupt},
		{"huge string", mutate(func(b []byte) { le.PutUint64(b[56:], 1<<40) }), ErrTruncated},
		{"unknown tensor type", setTensorField(t, good, "t.alpha", "type", 1234), ErrCorrupt},
		{"tensor beyond end", setTensorField(t, good, "t.beta", "offset", 1<<20), ErrTruncated},
		{"misaligned tensor", setTensorField(t, good, "t.beta", "offset", 33), ErrCorrupt},
		{"huge dims", setTensorField(t, good, "t.alpha", "dim0", 1<<62), ErrCorrupt},
		{"zero dim", setTensorField(t, good, "t.alpha", "dim0", 0), ErrCorrupt},
		{"too many dims", setTensorField(t, good, "t.alpha", "ndims", 9), ErrCorrupt},
		{"partial block", setTensorField(t, good, "t.q8", "dim0", 33), ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// setTensorField rewrites one field of a tensor descriptor in a copy of b.
func setTensorField(t *testing.T, b []byte, name, field string, v uint64) []byte {
	t.Helper()
	b = append([]byte(nil), b...)
	key := make([]byte, 8+len(name))
	binary.LittleEndian.PutUint64(key, uint64(len(name)))
	copy(key[8:], name)
	i := bytes.Index(b, key)
	if i < 0 {
		t.Fatalf("descriptor %q not found", name)
	}
	p := i + len(key)
	nd := int(binary.LittleEndian.Uint32(b[p:]))
	switch field {
	case "ndims":
		binary.LittleEndian.PutUint32(b[p:], uint32(v))
	case "dim0":
		binary.LittleEndian.PutUint64(b[p+4:], v)
	case "type":
		binary.LittleEndian.PutUint32(b[p+4+8*nd:], uint32(v))
	case "offset":
		binary.LittleEndian.PutUint64(b[p+8+8*nd:], v)
	}
	return b
}

func FuzzParse(f *testing.F) {
	f.Add(sample(f))
	if dir, ok := enginetest.ModelsDir(); ok {
		for _, name := range []string{enginetest.Stories260K, enginetest.TinyRandomF16, enginetest.Stories260KGGv1} {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := Parse(b)
		if err != nil {
			return
		}
		for _, tn := range g.Tensors {
			if uint64(len(tn.Data)) != tn.Size || g.DataOffset+tn.Offset+tn.Size > uint64(len(b)) {
				t.Fatalf("tensor %q out of bounds", tn.Name)
			}
		}
	})
}
