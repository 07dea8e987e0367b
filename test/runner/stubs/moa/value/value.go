// Package value is writ's stand-in for the moa value model used by the
// runner's job-input ("${{ inputs.x }}") support. It keeps exactly what the
// runner needs to decode job inputs from a payload; the module proxy does not
// serve the real module, and writ's tests never rely on input interpolation.
package value

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
)

// Kind is the type of a Value.
type Kind string

// The kinds the runner distinguishes.
const (
	NullKind   Kind = "null"
	StringKind Kind = "string"
	NumberKind Kind = "number"
	BoolKind   Kind = "boolean"
	ArrayKind  Kind = "array"
	ObjectKind Kind = "object"
)

// Errors the runner compares against.
var (
	ErrAttributeNotFound = errors.New("attribute not found")
	ErrInvalidKey        = errors.New("invalid key")
)

// Mapper is an object-like value.
type Mapper interface {
	All() iter.Seq2[Value, Value]
	Attr(string) (Value, error)
	Get(Value) (Value, error)
	Keys() iter.Seq[Value]
	Len() int
	Values() iter.Seq[Value]
	WithMarks(uint16) Mapper
}

// Value is a JSON-like value with marks (e.g. "sensitive").
type Value struct {
	kind   Kind
	raw    any
	object Mapper
	marks  uint16
}

// Null returns the null value.
func Null() Value { return Value{kind: NullKind} }

// String returns a string value.
func String(s string) Value { return Value{kind: StringKind, raw: s} }

// Object wraps a Mapper.
func Object(m Mapper) Value { return Value{kind: ObjectKind, object: m} }

// Kind reports the value's kind.
func (v Value) Kind() Kind {
	if v.kind == "" {
		return NullKind
	}
	return v.kind
}

// String renders the value: strings as themselves, others as JSON.
func (v Value) String() string {
	if s, ok := v.raw.(string); ok {
		return s
	}
	b, err := json.Marshal(v.raw)
	if err != nil {
		return fmt.Sprint(v.raw)
	}
	return string(b)
}

// WithMarks returns v with marks added.
func (v Value) WithMarks(marks uint16) Value { v.marks |= marks; return v }

// HasMarks reports whether all of marks are set on v.
func (v Value) HasMarks(marks uint16) bool { return v.marks&marks == marks }

// UnmarshalJSON decodes any JSON value.
func (v *Value) UnmarshalJSON(b []byte) error {
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	v.raw, v.object, v.marks = x, nil, 0
	switch x.(type) {
	case nil:
		v.kind = NullKind
	case string:
		v.kind = StringKind
	case float64:
		v.kind = NumberKind
	case bool:
		v.kind = BoolKind
	case []any:
		v.kind = ArrayKind
	case map[string]any:
		v.kind = ObjectKind
	}
	return nil
}

// MarshalJSON encodes the value's JSON form.
func (v Value) MarshalJSON() ([]byte, error) { return json.Marshal(v.raw) }
