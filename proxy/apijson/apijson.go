// Package apijson renders protobuf messages (events, segment changes,
// profiles) as Vigie's JSON APIs show them: the admin API, the console and
// the privacy export use this one rendering.
package apijson

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Marshal renders a protobuf message (an event, a segment change) for
// the JSON APIs: the message's populated fields under their proto names,
// as protojson would, except that 64-bit integers are JSON numbers (times
// in milliseconds such as received_at_ms are numbers a client can compare,
// not strings) and enum values are their lower-case names without the
// enum's prefix ("pseudonymous", not "MODE_PSEUDONYMOUS"; "entered", not
// "TRANSITION_ENTERED"). A bytes field holding JSON (properties, traits)
// is that JSON; other bytes are base64.
func Marshal(m proto.Message) (json.RawMessage, error) {
	return json.Marshal(messageValue(m.ProtoReflect()))
}

// messageValue is the JSON value of a message: its populated fields.
func messageValue(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		out[string(fd.Name())] = fieldValue(fd, v)
		return true
	})
	return out
}

// fieldValue is the JSON value of field fd holding v.
func fieldValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range out {
			out[i] = scalarValue(fd, l.Get(i))
		}
		return out
	case fd.IsMap():
		out := map[string]any{}
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			out[k.String()] = scalarValue(fd.MapValue(), mv)
			return true
		})
		return out
	}
	return scalarValue(fd, v)
}

// scalarValue is the JSON value of one (non-list, non-map) value of fd.
func scalarValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageValue(v.Message())
	case protoreflect.EnumKind:
		return enumName(fd.Enum(), v.Enum())
	case protoreflect.BytesKind:
		if b := v.Bytes(); json.Valid(b) {
			return json.RawMessage(b)
		}
		return base64.StdEncoding.EncodeToString(v.Bytes())
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return v.Float()
	}
	return v.Interface() // strings, bools, integers (64-bit ones as numbers)
}

// enumName is n's name in lower case without the prefix all of ed's value
// names share (MODE_ in MODE_ANONYMOUS, MODE_PSEUDONYMOUS…); an unknown
// number is the number.
func enumName(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) any {
	vd := ed.Values().ByNumber(n)
	if vd == nil {
		return int32(n)
	}
	name := string(vd.Name())
	prefix := string(ed.Values().Get(0).Name())
	for i := 1; i < ed.Values().Len(); i++ {
		other := string(ed.Values().Get(i).Name())
		for !strings.HasPrefix(other, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	if j := strings.LastIndexByte(prefix, '_'); j >= 0 && j+1 < len(name) {
		name = name[j+1:]
	}
	return strings.ToLower(name)
}
