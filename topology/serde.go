package topology

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
)

// Serde serializes and deserializes values of type T to and from the bytes of
// a Kafka record key or value. It also satisfies state.Codec[T], so the serdes
// that declare a store are the codecs of its typed view.
//
// Deserialize must not retain b: the runtime may reuse it.
type Serde[T any] interface {
	// Serialize encodes v.
	Serialize(v T) ([]byte, error)
	// Deserialize decodes b.
	Deserialize(b []byte) (T, error)
}

// BytesSerde returns a Serde that passes bytes through. Deserialize returns
// a copy. A source reading with it does not copy: the record's key or value
// shares the memory of the consumed record (see [RawRecord]), which nothing
// else changes. Such a slice has no spare capacity, so appending to it
// copies; keeping it keeps the consumed batch's buffer alive, so copy it
// (bytes.Clone) to hold it for long outside a store (stores copy anyway).
func BytesSerde() Serde[[]byte] { return bytesSerde{} }

// sharingDeserializer is implemented by serdes that can decode a source
// record's bytes without copying them (see RawRecord).
type sharingDeserializer[T any] interface {
	deserializeShared(b []byte) (T, error)
}

func (bytesSerde) deserializeShared(b []byte) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return b[:len(b):len(b)], nil
}

type bytesSerde struct{}

func (bytesSerde) Serialize(v []byte) ([]byte, error) { return v, nil }

func (bytesSerde) Append(dst, v []byte) ([]byte, error) { return append(dst, v...), nil }

func (bytesSerde) Deserialize(b []byte) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return append([]byte{}, b...), nil
}

// StringSerde returns a Serde for UTF-8 text (the bytes are not validated).
// A null key or value deserializes to "".
func StringSerde() Serde[string] { return stringSerde{} }

type stringSerde struct{}

func (stringSerde) Serialize(v string) ([]byte, error)          { return []byte(v), nil }
func (stringSerde) Deserialize(b []byte) (string, error)        { return string(b), nil }
func (stringSerde) Append(dst []byte, v string) ([]byte, error) { return append(dst, v...), nil }

// Int64Serde returns a Serde for int64 as 8 bytes big-endian, the encoding of
// Kafka's LongSerializer. Deserialize fails unless given exactly 8 bytes;
// because the encoding is two's complement, byte order matches numeric order
// only for non-negative values.
func Int64Serde() Serde[int64] { return int64Serde{} }

type int64Serde struct{}

func (int64Serde) Serialize(v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(v)), nil
}

func (int64Serde) Append(dst []byte, v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, uint64(v)), nil
}

func (int64Serde) Deserialize(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("int64: need 8 bytes, got %d", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// JSONSerde returns a Serde that encodes T with encoding/json.
func JSONSerde[T any]() Serde[T] { return jsonSerde[T]{} }

type jsonSerde[T any] struct{}

func (jsonSerde[T]) Serialize(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("json: encode %s: %w", reflect.TypeFor[T](), err)
	}
	return b, nil
}

func (jsonSerde[T]) Deserialize(b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("json: decode %s: %w", reflect.TypeFor[T](), err)
	}
	return v, nil
}
