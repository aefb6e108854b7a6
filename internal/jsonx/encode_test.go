package jsonx

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var jsonStrings = []string{
	"", "plain", `quote " and \ backslash`, "<html> & 'amp'", "tab\tnew\nline\rcr\bbs\fff",
	"\x00\x01\x1f\x7f", "é ü 漢字 🚀", "\u2028 and \u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate",
	strings.Repeat("long ", 100),
}

func TestAppendMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, false, int64(0), int64(-42), int64(math.MaxInt64), int64(-9007199254740993), 7, int32(-7),
		0.0, math.Copysign(0, -1), 0.1, 3.0, 1.5, 1e6, 1234567.0, 1e20, 1e21, 1e-4, 1e-5, 1e-6, 1e-7, 123456789.125, -2.5e-10,
		math.MaxFloat64, math.SmallestNonzeroFloat64,
		json.Number("1234.56"), json.Number("-0.5e+10"), json.Number(""), json.Number("12345678901234567890.123456789"),
		time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC), time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)),
		time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC), time.Time{},
		[]byte{0, 1, 2, 250}, []byte{}, []byte(nil),
		map[string]any{}, map[string]any(nil), []any{}, []any(nil),
		map[string]any{"b": 1, "a": []any{"x", nil, map[string]any{"z": true, "y": json.Number("3")}}, "": "empty key", "é": 1.25},
		map[string]any{"id": "c_1", "b": []any{json.Number("1"), nil, map[string]any{"z": true}}, "a": "x"},
	}
	for _, s := range jsonStrings {
		values = append(values, s, map[string]any{s: s})
	}
	for _, v := range values {
		want, err := encodingJSON(v)
		require.NoError(t, err, "%#v", v)
		got, ok := Append(nil, v)
		require.True(t, ok, "%#v", v)
		require.Equal(t, string(want), string(got), "%#v", v)
		got, err = Encode(v)
		require.NoError(t, err, "%#v", v)
		require.Equal(t, string(want), string(got), "%#v", v)
		require.Equal(t, string(want), string(AppendFunc(nil, v, nil)), "%#v", v)
	}
}

// refused are values Append leaves to encoding/json: other types, and what
// encoding/json refuses.
func refused() []any {
	type custom struct{ A int }
	return []any{
		math.NaN(), math.Inf(1), math.Inf(-1), json.Number("1e"), json.Number("abc"), json.Number("1 "),
		float32(1.5), uint8(3), custom{1}, map[string]string{"a": "<b>"}, []string{"a"},
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		map[string]any{"ok": 1, "bad": math.NaN()}, []any{1, json.Number("x")},
	}
}

func TestAppendLeavesTheRestToEncodingJSON(t *testing.T) {
	for _, v := range refused() {
		_, ok := Append(nil, v)
		require.False(t, ok, "%#v", v)
		// and Encode still gives encoding/json's answer, error or bytes
		for _, v := range []any{v, map[string]any{"v": v}, []any{"x", v}} {
			want, wantErr := encodingJSON(v)
			got, gotErr := Encode(v)
			require.Equal(t, wantErr != nil, gotErr != nil, "%#v", v)
			require.Equal(t, string(want), string(got), "%#v", v)
		}
	}
}

func TestAppendFuncWritesWhatAppendRefuses(t *testing.T) {
	mark := func(dst []byte, v any) []byte { return AppendString(dst, "fallback") }
	for _, v := range refused() {
		// A refused value inside a container leaves the rest as Append writes it.
		got := AppendFunc([]byte("prefix "), map[string]any{"a": v, "b": []any{v, "x"}, "c": 1.5}, mark)
		var want string
		switch v.(type) {
		case map[string]any, []any: // refused for one member only
			inner := string(AppendFunc(nil, v, mark))
			want = `prefix {"a":` + inner + `,"b":[` + inner + `,"x"],"c":1.5}`
		default:
			want = `prefix {"a":"fallback","b":["fallback","x"],"c":1.5}`
		}
		require.Equal(t, want, string(got), "%#v", v)
	}
	require.Equal(t, `{"bad":"fallback","ok":1}`, string(AppendFunc(nil, map[string]any{"ok": 1, "bad": math.NaN()}, mark)))
}

func TestAppendStringRandomStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "\"", "\\", "\n", "\x00", "\x1f", "é", "\u2028", "\xff", "\xe2\x80", "<", "&", ">", "漢", " "}
	for range 5000 {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()
		want, err := encodingJSON(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(AppendString(nil, s)), "%q", s)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := encodingJSON(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

func FuzzAppendFloat(f *testing.F) {
	for _, x := range []float64{0, -0.5, 1e6, 1e20, 1e21, 1e-6, 1e-7, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		want, wantErr := encodingJSON(x)
		got, ok := Append(nil, x)
		if ok != (wantErr == nil) || string(got) != string(want) {
			t.Fatalf("%v: got %s (%v), want %s (%v)", x, got, ok, want, wantErr)
		}
	})
}

func FuzzAppendNumber(f *testing.F) {
	for _, s := range []string{"0", "-1.5e+10", "1e", "01", "", "-", "1.", ".5", "1E-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, wantErr := encodingJSON(json.Number(s))
		got, ok := Append(nil, json.Number(s))
		if ok != (wantErr == nil) || (ok && string(got) != string(want)) {
			t.Fatalf("%q: got %s (%v), want %s (%v)", s, got, ok, want, wantErr)
		}
	})
}
