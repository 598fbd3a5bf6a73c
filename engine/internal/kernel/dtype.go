package kernel

import (
	"errors"
	"fmt"
)

// DType is the element type of a weight or cache row.
type DType uint8

// The element types the kernels read. Every type is converted exactly to
// float32 before it takes part in a product.
const (
	F32  DType = iota // IEEE binary32, little-endian
	F16               // IEEE binary16, little-endian
	BF16              // bfloat16 (the top half of a binary32), little-endian
	Q8_0              // blocks of 32: an F16 scale d then 32 int8 q; value d*q
	I8                // plain int8 without a scale (int8 KV cache; the caller applies the scale)

	numTypes = iota
)

// Q8Block is the number of elements in one Q8_0 block and Q8BlockBytes its
// size in bytes (2 for the F16 scale, 32 for the int8 values).
const (
	Q8Block      = 32
	Q8BlockBytes = 2 + Q8Block
)

// Sentinel errors.
var (
	ErrType        = errors.New("kernel: unknown dtype")
	ErrShape       = errors.New("kernel: bad matrix shape")
	ErrUnavailable = errors.New("kernel: implementation not available on this machine")
)

var dtypeNames = [...]string{F32: "f32", F16: "f16", BF16: "bf16", Q8_0: "q8_0", I8: "i8"}

func (t DType) String() string {
	if int(t) < len(dtypeNames) {
		return dtypeNames[t]
	}
	return fmt.Sprintf("dtype(%d)", uint8(t))
}

// Valid reports whether t is one of the known types.
func (t DType) Valid() bool { return int(t) < len(dtypeNames) }

// RowBytes is the size in bytes of a row of cols elements of type t. It
// returns -1 when t is unknown, cols is negative, or (for Q8_0) cols is not
// a multiple of Q8Block.
func RowBytes(t DType, cols int) int {
	if cols < 0 {
		return -1
	}
	switch t {
	case F32:
		return 4 * cols
	case F16, BF16:
		return 2 * cols
	case I8:
		return cols
	case Q8_0:
		if cols%Q8Block != 0 {
			return -1
		}
		return cols / Q8Block * Q8BlockBytes
	}
	return -1
}

// Mat is a row-major matrix of Rows rows of Cols elements of Type. Row r
// starts at byte r*RowBytes(Type, Cols) of Data. Data is little-endian and
// may be a read-only memory mapping of a model file: the kernels never
// write to it.
type Mat struct {
	Type       DType
	Rows, Cols int
	Data       []byte
}

// Validate checks that m is well formed: a known type, non-negative shape,
// Cols a multiple of Q8Block for Q8_0, and Data holding at least
// Rows*RowBytes(Type, Cols) bytes. A loader calls it once on each tensor it
// maps, so that the kernels never see a matrix built from bad file bytes.
func (m Mat) Validate() error {
	if !m.Type.Valid() {
		return fmt.Errorf("%w: %d", ErrType, uint8(m.Type))
	}
	if m.Rows < 0 || m.Cols < 0 {
		return fmt.Errorf("%w: %dx%d", ErrShape, m.Rows, m.Cols)
	}
	rb := RowBytes(m.Type, m.Cols)
	if rb < 0 {
		return fmt.Errorf("%w: %s row of %d columns (Q8_0 needs a multiple of %d)", ErrShape, m.Type, m.Cols, Q8Block)
	}
	if rb > 0 && m.Rows > len(m.Data)/rb {
		return fmt.Errorf("%w: %s %dx%d needs %d bytes per row, data has %d bytes", ErrShape, m.Type, m.Rows, m.Cols, rb, len(m.Data))
	}
	return nil
}

// RowBytes is the size in bytes of one row of m.
func (m Mat) RowBytes() int { return RowBytes(m.Type, m.Cols) }

// Row returns the bytes of row r.
func (m Mat) Row(r int) []byte {
	rb := RowBytes(m.Type, m.Cols)
	return m.Data[r*rb : (r+1)*rb : (r+1)*rb]
}
