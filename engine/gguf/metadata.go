package gguf

import (
	"fmt"
	"math"
)

// Value is one metadata value. Scalars hold their Go counterpart (uint8 …
// float64, bool, string); arrays of a scalar type hold a Go slice of it
// ([]uint32, []string, …); arrays of arrays hold []Value.
type Value struct {
	Type ValueType
	Elem ValueType // element type when Type is ValueArray
	v    any
}

// NewValue wraps a Go value as a metadata value. It accepts the scalar types
// of the format and slices of them.
func NewValue(v any) (Value, error) {
	switch x := v.(type) {
	case uint8:
		return Value{Type: ValueUint8, v: x}, nil
	case int8:
		return Value{Type: ValueInt8, v: x}, nil
	case uint16:
		return Value{Type: ValueUint16, v: x}, nil
	case int16:
		return Value{Type: ValueInt16, v: x}, nil
	case uint32:
		return Value{Type: ValueUint32, v: x}, nil
	case int32:
		return Value{Type: ValueInt32, v: x}, nil
	case float32:
		return Value{Type: ValueFloat32, v: x}, nil
	case bool:
		return Value{Type: ValueBool, v: x}, nil
	case string:
		return Value{Type: ValueString, v: x}, nil
	case uint64:
		return Value{Type: ValueUint64, v: x}, nil
	case int64:
		return Value{Type: ValueInt64, v: x}, nil
	case float64:
		return Value{Type: ValueFloat64, v: x}, nil
	case []uint8:
		return Value{Type: ValueArray, Elem: ValueUint8, v: x}, nil
	case []int8:
		return Value{Type: ValueArray, Elem: ValueInt8, v: x}, nil
	case []uint16:
		return Value{Type: ValueArray, Elem: ValueUint16, v: x}, nil
	case []int16:
		return Value{Type: ValueArray, Elem: ValueInt16, v: x}, nil
	case []uint32:
		return Value{Type: ValueArray, Elem: ValueUint32, v: x}, nil
	case []int32:
		return Value{Type: ValueArray, Elem: ValueInt32, v: x}, nil
	case []float32:
		return Value{Type: ValueArray, Elem: ValueFloat32, v: x}, nil
	case []bool:
		return Value{Type: ValueArray, Elem: ValueBool, v: x}, nil
	case []string:
		return Value{Type: ValueArray, Elem: ValueString, v: x}, nil
	case []uint64:
		return Value{Type: ValueArray, Elem: ValueUint64, v: x}, nil
	case []int64:
		return Value{Type: ValueArray, Elem: ValueInt64, v: x}, nil
	case []float64:
		return Value{Type: ValueArray, Elem: ValueFloat64, v: x}, nil
	case Value:
		return x, nil
	}
	return Value{}, fmt.Errorf("gguf: cannot store %T as a metadata value", v)
}

// Any returns the value as its Go counterpart.
func (v Value) Any() any { return v.v }

// Len is the number of elements of an array value (0 for a scalar).
func (v Value) Len() int {
	switch x := v.v.(type) {
	case []uint8:
		return len(x)
	case []int8:
		return len(x)
	case []uint16:
		return len(x)
	case []int16:
		return len(x)
	case []uint32:
		return len(x)
	case []int32:
		return len(x)
	case []float32:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	case []uint64:
		return len(x)
	case []int64:
		return len(x)
	case []float64:
		return len(x)
	case []Value:
		return len(x)
	}
	return 0
}

func (v Value) String() string {
	if v.Type == ValueArray {
		return fmt.Sprintf("[%s x %d]", v.Elem, v.Len())
	}
	if s, ok := v.v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v.v)
}

// int64Of converts an integer scalar; ok is false for other types.
func int64Of(x any) (i int64, u uint64, signed, ok bool) {
	switch n := x.(type) {
	case uint8:
		return 0, uint64(n), false, true
	case uint16:
		return 0, uint64(n), false, true
	case uint32:
		return 0, uint64(n), false, true
	case uint64:
		return 0, n, false, true
	case int8:
		return int64(n), 0, true, true
	case int16:
		return int64(n), 0, true, true
	case int32:
		return int64(n), 0, true, true
	case int64:
		return n, 0, true, true
	}
	return 0, 0, false, false
}

// Metadata is the key/value section of a file, in file order.
type Metadata struct {
	keys []string
	m    map[string]Value
}

// Keys returns the keys in the order they appear in the file.
func (md *Metadata) Keys() []string { return append([]string(nil), md.keys...) }

// Lookup returns the value stored under key.
func (md *Metadata) Lookup(key string) (Value, bool) {
	v, ok := md.m[key]
	return v, ok
}

// Has reports whether key is present.
func (md *Metadata) Has(key string) bool { _, ok := md.m[key]; return ok }

// Set stores v under key, keeping the first position of an existing key.
func (md *Metadata) Set(key string, v any) error {
	val, err := NewValue(v)
	if err != nil {
		return fmt.Errorf("gguf: key %q: %w", key, err)
	}
	if md.m == nil {
		md.m = make(map[string]Value)
	}
	if _, ok := md.m[key]; !ok {
		md.keys = append(md.keys, key)
	}
	md.m[key] = val
	return nil
}

func (md *Metadata) get(key string) (Value, error) {
	v, ok := md.m[key]
	if !ok {
		return Value{}, fmt.Errorf("gguf: key %q: %w", key, ErrKeyNotFound)
	}
	return v, nil
}

func wrongType(key string, v Value, want string) error {
	got := v.Type.String()
	if v.Type == ValueArray {
		got = "array of " + v.Elem.String()
	}
	return fmt.Errorf("gguf: key %q is %s, want %s: %w", key, got, want, ErrWrongType)
}

// String returns a string value.
func (md *Metadata) String(key string) (string, error) {
	v, err := md.get(key)
	if err != nil {
		return "", err
	}
	s, ok := v.v.(string)
	if !ok {
		return "", wrongType(key, v, "string")
	}
	return s, nil
}

// Uint returns a non-negative integer value of any integer type.
func (md *Metadata) Uint(key string) (uint64, error) {
	v, err := md.get(key)
	if err != nil {
		return 0, err
	}
	i, u, signed, ok := int64Of(v.v)
	if !ok {
		return 0, wrongType(key, v, "an unsigned integer")
	}
	if signed {
		if i < 0 {
			return 0, fmt.Errorf("gguf: key %q is negative (%d): %w", key, i, ErrWrongType)
		}
		return uint64(i), nil
	}
	return u, nil
}

// Int returns an integer value of any integer type that fits in an int64.
func (md *Metadata) Int(key string) (int64, error) {
	v, err := md.get(key)
	if err != nil {
		return 0, err
	}
	i, u, signed, ok := int64Of(v.v)
	if !ok {
		return 0, wrongType(key, v, "an integer")
	}
	if !signed {
		if u > math.MaxInt64 {
			return 0, fmt.Errorf("gguf: key %q overflows int64: %w", key, ErrWrongType)
		}
		return int64(u), nil
	}
	return i, nil
}

// Float returns a float32 or float64 value as a float64.
func (md *Metadata) Float(key string) (float64, error) {
	v, err := md.get(key)
	if err != nil {
		return 0, err
	}
	switch f := v.v.(type) {
	case float32:
		return float64(f), nil
	case float64:
		return f, nil
	}
	return 0, wrongType(key, v, "a float")
}

// Bool returns a bool value.
func (md *Metadata) Bool(key string) (bool, error) {
	v, err := md.get(key)
	if err != nil {
		return false, err
	}
	b, ok := v.v.(bool)
	if !ok {
		return false, wrongType(key, v, "bool")
	}
	return b, nil
}

// Strings returns an array of strings. The slice is shared: do not modify it.
func (md *Metadata) Strings(key string) ([]string, error) {
	v, err := md.get(key)
	if err != nil {
		return nil, err
	}
	s, ok := v.v.([]string)
	if !ok {
		return nil, wrongType(key, v, "array of string")
	}
	return s, nil
}

// Float32s returns an array of float32. The slice is shared: do not modify it.
func (md *Metadata) Float32s(key string) ([]float32, error) {
	v, err := md.get(key)
	if err != nil {
		return nil, err
	}
	s, ok := v.v.([]float32)
	if !ok {
		return nil, wrongType(key, v, "array of float32")
	}
	return s, nil
}

// Int32s returns an array of any 8-, 16- or 32-bit integer type as int32
// (unsigned 32-bit values above MaxInt32 are refused).
func (md *Metadata) Int32s(key string) ([]int32, error) {
	v, err := md.get(key)
	if err != nil {
		return nil, err
	}
	switch s := v.v.(type) {
	case []int32:
		return s, nil
	case []uint32:
		out := make([]int32, len(s))
		for i, x := range s {
			if x > math.MaxInt32 {
				return nil, fmt.Errorf("gguf: key %q element %d overflows int32: %w", key, i, ErrWrongType)
			}
			out[i] = int32(x)
		}
		return out, nil
	case []int8:
		return widen(s), nil
	case []uint8:
		return widen(s), nil
	case []int16:
		return widen(s), nil
	case []uint16:
		return widen(s), nil
	}
	return nil, wrongType(key, v, "array of integers")
}

func widen[T int8 | uint8 | int16 | uint16](s []T) []int32 {
	out := make([]int32, len(s))
	for i, x := range s {
		out[i] = int32(x)
	}
	return out
}
