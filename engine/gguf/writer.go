package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Writer builds a GGUF version 3 file: set metadata, add tensors, WriteTo.
// Tensor bytes are produced by a callback at write time, so a multi-gigabyte
// synthetic model is streamed, never held in memory.
type Writer struct {
	Metadata Metadata
	tensors  []writerTensor
	names    map[string]bool
}

type writerTensor struct {
	Tensor
	write func(io.Writer) error
}

// AddTensor declares a tensor whose size bytes write will produce.
func (w *Writer) AddTensor(name string, typ Type, dims []uint64, write func(io.Writer) error) error {
	if !typ.Known() {
		return fmt.Errorf("gguf: tensor %q: unknown type %d", name, uint32(typ))
	}
	if len(dims) == 0 || len(dims) > MaxDims {
		return fmt.Errorf("gguf: tensor %q: %d dimensions", name, len(dims))
	}
	if w.names[name] {
		return fmt.Errorf("gguf: duplicate tensor %q", name)
	}
	t := Tensor{Name: name, Type: typ, Dims: append([]uint64(nil), dims...)}
	if dims[0]%typ.BlockSize() != 0 {
		return fmt.Errorf("gguf: tensor %q: row of %d is not a whole number of %s blocks", name, dims[0], typ)
	}
	t.Size = t.Elements() / typ.BlockSize() * typ.TypeSize()
	if w.names == nil {
		w.names = map[string]bool{}
	}
	w.names[name] = true
	w.tensors = append(w.tensors, writerTensor{Tensor: t, write: write})
	return nil
}

// AddTensorBytes declares a tensor with its bytes in memory.
func (w *Writer) AddTensorBytes(name string, typ Type, dims []uint64, data []byte) error {
	if err := w.AddTensor(name, typ, dims, func(out io.Writer) error {
		_, err := out.Write(data)
		return err
	}); err != nil {
		return err
	}
	if t := w.tensors[len(w.tensors)-1]; uint64(len(data)) != t.Size {
		w.tensors = w.tensors[:len(w.tensors)-1]
		delete(w.names, name)
		return fmt.Errorf("gguf: tensor %q: %d bytes given, shape needs %d", name, len(data), t.Size)
	}
	return nil
}

// WriteTo writes the file.
func (w *Writer) WriteTo(dst io.Writer) (int64, error) {
	align := uint64(DefaultAlignment)
	if w.Metadata.Has("general.alignment") {
		a, err := w.Metadata.Uint("general.alignment")
		if err != nil || a == 0 || a&(a-1) != 0 {
			return 0, fmt.Errorf("gguf: bad general.alignment")
		}
		align = a
	}
	cw := &countWriter{w: bufio.NewWriterSize(dst, 1<<20)}
	e := &encoder{w: cw}
	e.u32(magic)
	e.u32(3)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.Metadata.keys)))
	for _, k := range w.Metadata.keys {
		e.str(k)
		v := w.Metadata.m[k]
		e.u32(uint32(v.Type))
		e.value(v)
	}
	off := uint64(0)
	for i := range w.tensors {
		t := &w.tensors[i]
		t.Offset = off
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(t.Offset)
		off += (t.Size + align - 1) / align * align
	}
	e.pad(align)
	for i := range w.tensors {
		t := &w.tensors[i]
		if e.err != nil {
			break
		}
		start := cw.n
		if err := t.write(cw); err != nil {
			return cw.n, fmt.Errorf("gguf: write tensor %q: %w", t.Name, err)
		}
		if got := uint64(cw.n - start); got != t.Size {
			return cw.n, fmt.Errorf("gguf: tensor %q: wrote %d bytes, shape needs %d", t.Name, got, t.Size)
		}
		e.pad(align)
	}
	if e.err == nil {
		e.err = cw.w.Flush()
	}
	return cw.n, e.err
}

type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type encoder struct {
	w   *countWriter
	err error
	buf [8]byte
}

func (e *encoder) write(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *encoder) u8(v uint8)   { e.write([]byte{v}) }
func (e *encoder) u16(v uint16) { binary.LittleEndian.PutUint16(e.buf[:], v); e.write(e.buf[:2]) }
func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:], v); e.write(e.buf[:4]) }
func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:], v); e.write(e.buf[:8]) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.write([]byte(s)) }

func (e *encoder) pad(align uint64) {
	if r := uint64(e.w.n) % align; r != 0 {
		e.write(make([]byte, align-r))
	}
}

func (e *encoder) value(v Value) {
	switch x := v.v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case []Value:
		e.u32(uint32(ValueArray))
		e.u64(uint64(len(x)))
		for _, el := range x {
			e.u32(uint32(el.Elem))
			e.arrayBody(el)
		}
	default:
		e.u32(uint32(v.Elem))
		e.arrayBody(v)
	}
}

// arrayBody writes an array's count and elements (its element type is
// already written).
func (e *encoder) arrayBody(v Value) {
	e.u64(uint64(v.Len()))
	switch x := v.v.(type) {
	case []Value:
		for _, el := range x {
			e.u32(uint32(el.Elem))
			e.arrayBody(el)
		}
	case []uint8:
		e.write(x)
	case []int8:
		for _, y := range x {
			e.u8(uint8(y))
		}
	case []uint16:
		for _, y := range x {
			e.u16(y)
		}
	case []int16:
		for _, y := range x {
			e.u16(uint16(y))
		}
	case []uint32:
		for _, y := range x {
			e.u32(y)
		}
	case []int32:
		for _, y := range x {
			e.u32(uint32(y))
		}
	case []float32:
		for _, y := range x {
			e.u32(math.Float32bits(y))
		}
	case []bool:
		for _, y := range x {
			if y {
				e.u8(1)
			} else {
				e.u8(0)
			}
		}
	case []string:
		for _, y := range x {
			e.str(y)
		}
	case []uint64:
		for _, y := range x {
			e.u64(y)
		}
	case []int64:
		for _, y := range x {
			e.u64(uint64(y))
		}
	case []float64:
		for _, y := range x {
			e.u64(math.Float64bits(y))
		}
	}
}
