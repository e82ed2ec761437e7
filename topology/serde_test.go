package topology_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/onceflow/onceflow/state"
	"github.com/onceflow/onceflow/topology"
)

func TestInt64Serde(t *testing.T) {
	s := topology.Int64Serde()
	tests := []struct {
		v    int64
		want []byte
	}{
		{0, []byte{0, 0, 0, 0, 0, 0, 0, 0}},
		{1, []byte{0, 0, 0, 0, 0, 0, 0, 1}},
		{258, []byte{0, 0, 0, 0, 0, 0, 1, 2}},
		{-1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{math.MaxInt64, []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{math.MinInt64, []byte{0x80, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		b, err := s.Serialize(tt.v)
		if err != nil || !bytes.Equal(b, tt.want) {
			t.Errorf("Serialize(%d) = %v, %v; want %v", tt.v, b, err, tt.want)
		}
		got, err := s.Deserialize(tt.want)
		if err != nil || got != tt.v {
			t.Errorf("Deserialize(%v) = %d, %v; want %d", tt.want, got, err, tt.v)
		}
	}
	for _, b := range [][]byte{nil, {1, 2, 3}, make([]byte, 9)} {
		_, err := s.Deserialize(b)
		want := "int64: need 8 bytes, got " + map[int]string{0: "0", 3: "3", 9: "9"}[len(b)]
		if err == nil || err.Error() != want {
			t.Errorf("Deserialize(%v) error = %v, want %s", b, err, want)
		}
	}
}

func TestStringAndBytesSerde(t *testing.T) {
	ss := topology.StringSerde()
	b, err := ss.Serialize("héllo")
	if err != nil || string(b) != "héllo" {
		t.Fatalf("StringSerde.Serialize = %q, %v", b, err)
	}
	if s, err := ss.Deserialize([]byte("héllo")); err != nil || s != "héllo" {
		t.Fatalf("StringSerde.Deserialize = %q, %v", s, err)
	}
	if s, err := ss.Deserialize(nil); err != nil || s != "" {
		t.Fatalf("StringSerde.Deserialize(nil) = %q, %v", s, err)
	}

	bs := topology.BytesSerde()
	in := []byte{1, 2, 3}
	out, err := bs.Deserialize(in)
	if err != nil || !bytes.Equal(out, []byte{1, 2, 3}) {
		t.Fatalf("BytesSerde.Deserialize = %v, %v", out, err)
	}
	in[0] = 9
	if out[0] != 1 {
		t.Fatal("BytesSerde.Deserialize shares memory with its input")
	}
	if out, err := bs.Deserialize(nil); err != nil || out != nil {
		t.Fatalf("BytesSerde.Deserialize(nil) = %v, %v; want nil, nil", out, err)
	}
	if b, err := bs.Serialize([]byte("x")); err != nil || string(b) != "x" {
		t.Fatalf("BytesSerde.Serialize = %q, %v", b, err)
	}
}

type event struct {
	ID    int      `json:"id"`
	Tags  []string `json:"tags"`
	Valid bool     `json:"valid"`
}

func TestJSONSerde(t *testing.T) {
	s := topology.JSONSerde[event]()
	b, err := s.Serialize(event{ID: 7, Tags: []string{"a", "b"}, Valid: true})
	if want := `{"id":7,"tags":["a","b"],"valid":true}`; err != nil || string(b) != want {
		t.Fatalf("Serialize = %s, %v; want %s", b, err, want)
	}
	got, err := s.Deserialize(b)
	if err != nil || got.ID != 7 || len(got.Tags) != 2 || got.Tags[1] != "b" || !got.Valid {
		t.Fatalf("Deserialize = %+v, %v", got, err)
	}

	_, err = s.Deserialize([]byte(`{"id":"seven"}`))
	want := `json: decode topology_test.event: json: cannot unmarshal string into Go struct field event.id of type int`
	if err == nil || err.Error() != want {
		t.Errorf("Deserialize(bad) error = %v\nwant %s", err, want)
	}
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) {
		t.Errorf("Deserialize(bad) error does not wrap *json.UnmarshalTypeError")
	}
	_, err = s.Deserialize([]byte(`{`))
	if want := `json: decode topology_test.event: unexpected end of JSON input`; err == nil || err.Error() != want {
		t.Errorf("Deserialize(truncated) error = %v, want %s", err, want)
	}

	fs := topology.JSONSerde[func()]()
	_, err = fs.Serialize(func() {})
	if want := `json: encode func(): json: unsupported type: func()`; err == nil || err.Error() != want {
		t.Errorf("Serialize(func) error = %v, want %s", err, want)
	}
}

// TestSerdeAppend checks that the built-in serdes a typed store encodes
// into scratch space append exactly what Serialize returns.
func TestSerdeAppend(t *testing.T) {
	prefix := []byte("pre")
	check := func(name string, app func([]byte) ([]byte, error), ser func() ([]byte, error)) {
		t.Helper()
		want, err := ser()
		if err != nil {
			t.Fatal(err)
		}
		got, err := app(bytes.Clone(prefix))
		if err != nil || !bytes.Equal(got, append(bytes.Clone(prefix), want...)) {
			t.Errorf("%s: Append = %q, %v; want %q after the prefix", name, got, err, want)
		}
	}
	i64 := topology.Int64Serde().(state.Appender[int64])
	for _, v := range []int64{0, -1, 258, math.MinInt64} {
		check("Int64Serde", func(dst []byte) ([]byte, error) { return i64.Append(dst, v) },
			func() ([]byte, error) { return topology.Int64Serde().Serialize(v) })
	}
	str := topology.StringSerde().(state.Appender[string])
	for _, v := range []string{"", "héllo"} {
		check("StringSerde", func(dst []byte) ([]byte, error) { return str.Append(dst, v) },
			func() ([]byte, error) { return topology.StringSerde().Serialize(v) })
	}
	bs := topology.BytesSerde().(state.Appender[[]byte])
	for _, v := range [][]byte{nil, {1, 2, 3}} {
		check("BytesSerde", func(dst []byte) ([]byte, error) { return bs.Append(dst, v) },
			func() ([]byte, error) { return topology.BytesSerde().Serialize(v) })
	}
}
