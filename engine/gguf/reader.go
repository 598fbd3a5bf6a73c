package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"unicode/utf8"
)

// Errors a caller may want to tell apart.
var (
	ErrBadMagic       = errors.New("gguf: not a GGUF file (bad magic)")
	ErrVersion        = errors.New("gguf: unsupported version")
	ErrTruncated      = errors.New("gguf: file is truncated")
	ErrCorrupt        = errors.New("gguf: file is corrupt")
	ErrKeyNotFound    = errors.New("gguf: key not found")
	ErrWrongType      = errors.New("gguf: metadata value has the wrong type")
	ErrTensorNotFound = errors.New("gguf: tensor not found")
)

const (
	magic = 0x46554747 // "GGUF" little-endian

	// DefaultAlignment is the data alignment when general.alignment is absent.
	DefaultAlignment = 32
	// MaxDims is the most dimensions a tensor may have (GGML_MAX_DIMS).
	MaxDims = 4
	// maxDepth bounds nested arrays.
	maxDepth = 4
	// maxNameLen bounds tensor names and keys (llama.cpp allows 64 for
	// names; keys are free-form but never long in practice).
	maxNameLen = 1 << 16
)

// Tensor describes one tensor and holds its bytes.
type Tensor struct {
	Name string
	Type Type
	// Dims in ggml order: Dims[0] is the contiguous (innermost) dimension.
	Dims []uint64
	// Offset of the data relative to the start of the data section.
	Offset uint64
	// Size of the data in bytes.
	Size uint64
	// Data is the tensor's bytes, a read-only view into the file mapping
	// (never write to it; it is invalid after File.Close).
	Data []byte
}

// Elements is the number of elements in the tensor.
func (t *Tensor) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// File is a parsed GGUF file.
type File struct {
	Version    uint32
	Metadata   Metadata
	Tensors    []Tensor
	Alignment  uint64
	DataOffset uint64 // start of the data section in the file

	byName map[string]int
	data   []byte
	unmap  func() error
}

// Tensor returns the tensor with the given name.
func (f *File) Tensor(name string) (*Tensor, error) {
	i, ok := f.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrTensorNotFound, name)
	}
	return &f.Tensors[i], nil
}

// Close releases the file mapping. Tensor data must not be used afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	f.data = nil
	for i := range f.Tensors {
		f.Tensors[i].Data = nil
	}
	return err
}

// cursor reads little-endian values from a byte slice, with a sticky error.
type cursor struct {
	b   []byte
	off uint64
	err error
}

func (c *cursor) remaining() uint64 { return uint64(len(c.b)) - c.off }

func (c *cursor) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func (c *cursor) take(n uint64) []byte {
	if c.err != nil {
		return nil
	}
	if n > c.remaining() {
		c.fail(fmt.Errorf("%w: need %d bytes at offset %d, %d left", ErrTruncated, n, c.off, c.remaining()))
		return nil
	}
	b := c.b[c.off : c.off+n]
	c.off += n
	return b
}

func (c *cursor) u8() uint8 {
	if b := c.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (c *cursor) u16() uint16 {
	if b := c.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (c *cursor) u32() uint32 {
	if b := c.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (c *cursor) u64() uint64 {
	if b := c.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (c *cursor) str(what string) string {
	n := c.u64()
	if c.err != nil {
		return ""
	}
	if n > c.remaining() {
		c.fail(fmt.Errorf("%w: %s length %d at offset %d exceeds the %d bytes left", ErrTruncated, what, n, c.off-8, c.remaining()))
		return ""
	}
	return string(c.take(n))
}

// count reads an element count and checks that count elements of at least
// minSize bytes each can fit in what is left, so nothing is ever allocated
// from an unchecked field.
func (c *cursor) count(what string, minSize uint64) uint64 {
	n := c.u64()
	if c.err != nil {
		return 0
	}
	if minSize > 0 && n > c.remaining()/minSize {
		c.fail(fmt.Errorf("%w: %s count %d cannot fit in the %d bytes left", ErrCorrupt, what, n, c.remaining()))
		return 0
	}
	return n
}

// Parse reads a GGUF file held in memory. Tensor data slices point into b.
func Parse(b []byte) (*File, error) {
	c := &cursor{b: b}
	if m := c.u32(); c.err != nil {
		return nil, fmt.Errorf("%w (%d bytes)", ErrBadMagic, len(b))
	} else if m != magic {
		return nil, fmt.Errorf("%w: %q", ErrBadMagic, b[:4])
	}
	f := &File{Version: c.u32(), byName: map[string]int{}, data: b}
	switch {
	case c.err != nil:
		return nil, c.err
	case f.Version == 1:
		return nil, fmt.Errorf("%w: version 1 (32-bit counts, written by converters before August 2023); re-convert the model with a current llama.cpp converter", ErrVersion)
	case f.Version == 2 || f.Version == 3:
	case bits.ReverseBytes32(f.Version) == 2 || bits.ReverseBytes32(f.Version) == 3:
		return nil, fmt.Errorf("%w: big-endian file (version %d byte-swapped); only little-endian files are supported", ErrVersion, bits.ReverseBytes32(f.Version))
	default:
		return nil, fmt.Errorf("%w: version %d (supported: 2, 3)", ErrVersion, f.Version)
	}
	// Minimum encodings: a tensor descriptor is at least
	// name len(8) + n_dims(4) + one dim(8) + type(4) + offset(8); a key/value
	// at least key len(8) + type(4) + one byte.
	nTensors := c.count("tensor", 32)
	nKV := c.count("metadata", 13)
	if c.err != nil {
		return nil, c.err
	}

	for i := uint64(0); i < nKV; i++ {
		key := c.str("key")
		if c.err != nil {
			return nil, fmt.Errorf("metadata %d: %w", i, c.err)
		}
		if len(key) > maxNameLen || !utf8.ValidString(key) || key == "" {
			return nil, fmt.Errorf("%w: metadata %d has an invalid key", ErrCorrupt, i)
		}
		if f.Metadata.Has(key) {
			return nil, fmt.Errorf("%w: duplicate metadata key %q", ErrCorrupt, key)
		}
		vt := ValueType(c.u32())
		v := c.value(vt, 0)
		if c.err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, c.err)
		}
		if f.Metadata.m == nil {
			f.Metadata.m = make(map[string]Value, nKV)
		}
		f.Metadata.keys = append(f.Metadata.keys, key)
		f.Metadata.m[key] = v
	}

	f.Alignment = DefaultAlignment
	if f.Metadata.Has("general.alignment") {
		a, err := f.Metadata.Uint("general.alignment")
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return nil, fmt.Errorf("%w: general.alignment %d is not a power of two up to 1 MiB", ErrCorrupt, a)
		}
		f.Alignment = a
	}

	f.Tensors = make([]Tensor, 0, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t, err := c.tensorInfo()
		if err != nil {
			return nil, fmt.Errorf("tensor %d: %w", i, err)
		}
		if _, dup := f.byName[t.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor %q", ErrCorrupt, t.Name)
		}
		if t.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("%w: tensor %q offset %d is not aligned to %d", ErrCorrupt, t.Name, t.Offset, f.Alignment)
		}
		f.byName[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}

	// The data section starts at the next aligned offset.
	f.DataOffset = (c.off + f.Alignment - 1) / f.Alignment * f.Alignment
	for i := range f.Tensors {
		t := &f.Tensors[i]
		end := f.DataOffset + t.Offset + t.Size // each term is bounded below 2^62
		if f.DataOffset+t.Offset < f.DataOffset || end > uint64(len(b)) {
			return nil, fmt.Errorf("%w: tensor %q data [%d, %d) lies beyond the end of the file (%d bytes)", ErrTruncated, t.Name, f.DataOffset+t.Offset, end, len(b))
		}
		t.Data = b[f.DataOffset+t.Offset : end : end]
	}
	return f, nil
}

func (c *cursor) tensorInfo() (Tensor, error) {
	var t Tensor
	t.Name = c.str("tensor name")
	if c.err != nil {
		return t, c.err
	}
	if len(t.Name) == 0 || len(t.Name) > maxNameLen || !utf8.ValidString(t.Name) {
		return t, fmt.Errorf("%w: invalid tensor name", ErrCorrupt)
	}
	nd := c.u32()
	if c.err != nil {
		return t, c.err
	}
	if nd == 0 || nd > MaxDims {
		return t, fmt.Errorf("%w: tensor %q has %d dimensions (1..%d allowed)", ErrCorrupt, t.Name, nd, MaxDims)
	}
	t.Dims = make([]uint64, nd)
	n := uint64(1)
	for i := range t.Dims {
		d := c.u64()
		if c.err != nil {
			return t, c.err
		}
		if d == 0 {
			return t, fmt.Errorf("%w: tensor %q has a zero dimension", ErrCorrupt, t.Name)
		}
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > 1<<56 {
			return t, fmt.Errorf("%w: tensor %q has too many elements", ErrCorrupt, t.Name)
		}
		n = lo
		t.Dims[i] = d
	}
	t.Type = Type(c.u32())
	t.Offset = c.u64()
	if c.err != nil {
		return t, c.err
	}
	if !t.Type.Known() {
		return t, fmt.Errorf("%w: tensor %q has unknown type %d", ErrCorrupt, t.Name, uint32(t.Type))
	}
	if t.Dims[0]%t.Type.BlockSize() != 0 {
		return t, fmt.Errorf("%w: tensor %q row of %d elements is not a whole number of %s blocks", ErrCorrupt, t.Name, t.Dims[0], t.Type)
	}
	t.Size = n / t.Type.BlockSize() * t.Type.TypeSize()
	if t.Offset > math.MaxInt64/2 {
		return t, fmt.Errorf("%w: tensor %q offset %d is out of range", ErrCorrupt, t.Name, t.Offset)
	}
	return t, nil
}

func (c *cursor) value(vt ValueType, depth int) Value {
	v := Value{Type: vt}
	switch vt {
	case ValueUint8:
		v.v = c.u8()
	case ValueInt8:
		v.v = int8(c.u8())
	case ValueUint16:
		v.v = c.u16()
	case ValueInt16:
		v.v = int16(c.u16())
	case ValueUint32:
		v.v = c.u32()
	case ValueInt32:
		v.v = int32(c.u32())
	case ValueFloat32:
		v.v = math.Float32frombits(c.u32())
	case ValueBool:
		b := c.u8()
		if b > 1 {
			c.fail(fmt.Errorf("%w: bool value %d", ErrCorrupt, b))
		}
		v.v = b == 1
	case ValueString:
		v.v = c.str("string")
	case ValueUint64:
		v.v = c.u64()
	case ValueInt64:
		v.v = int64(c.u64())
	case ValueFloat64:
		v.v = math.Float64frombits(c.u64())
	case ValueArray:
		if depth >= maxDepth {
			c.fail(fmt.Errorf("%w: arrays nested deeper than %d", ErrCorrupt, maxDepth))
			return v
		}
		v.Elem = ValueType(c.u32())
		v.v = c.array(v.Elem, depth+1)
	default:
		c.fail(fmt.Errorf("%w: unknown value type %d", ErrCorrupt, uint32(vt)))
	}
	return v
}

func (c *cursor) array(et ValueType, depth int) any {
	min := et.fixedSize()
	switch et {
	case ValueString:
		min = 8
	case ValueArray:
		min = 12
	}
	if min == 0 {
		c.fail(fmt.Errorf("%w: unknown array element type %d", ErrCorrupt, uint32(et)))
		return nil
	}
	n := c.count("array", min)
	if c.err != nil {
		return nil
	}
	switch et {
	case ValueUint8:
		return append([]uint8(nil), c.take(n)...)
	case ValueInt8:
		return fixedArray(c, n, func(b []byte) int8 { return int8(b[0]) })
	case ValueUint16:
		return fixedArray(c, n, binary.LittleEndian.Uint16)
	case ValueInt16:
		return fixedArray(c, n, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
	case ValueUint32:
		return fixedArray(c, n, binary.LittleEndian.Uint32)
	case ValueInt32:
		return fixedArray(c, n, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	case ValueFloat32:
		return fixedArray(c, n, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	case ValueUint64:
		return fixedArray(c, n, binary.LittleEndian.Uint64)
	case ValueInt64:
		return fixedArray(c, n, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
	case ValueFloat64:
		return fixedArray(c, n, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
	case ValueBool:
		out := make([]bool, n)
		for i, b := range c.take(n) {
			if b > 1 {
				c.fail(fmt.Errorf("%w: bool value %d", ErrCorrupt, b))
				return nil
			}
			out[i] = b == 1
		}
		return out
	case ValueString:
		out := make([]string, n)
		for i := range out {
			out[i] = c.str("string")
			if c.err != nil {
				return nil
			}
		}
		return out
	default: // ValueArray
		out := make([]Value, n)
		for i := range out {
			out[i] = c.value(ValueArray, depth)
			if c.err != nil {
				return nil
			}
		}
		return out
	}
}

func fixedArray[T any](c *cursor, n uint64, dec func([]byte) T) []T {
	var zero T
	size := uint64(binary.Size(zero))
	b := c.take(n * size) // n*size ≤ remaining, checked by count
	if b == nil {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		out[i] = dec(b[uint64(i)*size:])
	}
	return out
}
