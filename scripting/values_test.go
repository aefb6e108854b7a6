package scripting

import (
	"context"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	starlarktime "go.starlark.net/lib/time"
	"go.starlark.net/starlark"

	"github.com/stretchr/testify/require"
)

// Every warehouse column type goes into a script and back out unchanged.
func TestValuesRoundTrip(t *testing.T) {
	t.Parallel()
	record := map[string]any{
		"numeric":   json.Number("12345678901234567890.123456789"),
		"numeric2":  json.Number("-0.10"),
		"big_int":   json.Number(new(big.Int).Lsh(big.NewInt(1), 70).String()), // numeric(30,0): still a decimal
		"bigint":    int64(-9223372036854775808),
		"int":       int64(42),
		"float":     3.14159,
		"bool":      true,
		"null":      nil,
		"text":      "Zoë ✓",
		"uuid":      "3f1c0b6e-2a4d-4c8e-9f7a-0e5d6c4b3a21",
		"bytes":     []byte{0, 1, 2, 0xff},
		"timestamp": time.Date(2024, 3, 31, 2, 30, 0, 123456789, time.UTC),
		"zoned":     time.Date(2024, 10, 27, 2, 30, 0, 0, time.FixedZone("", 2*3600)),
		"date":      time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"interval":  90 * time.Minute,
		"jsonb": map[string]any{
			"tags":   []any{"a", int64(1), 2.5, nil, true, map[string]any{"deep": []any{}}},
			"nested": map[string]any{"n": json.Number("1.50")},
		},
		"int_array":  []any{int64(1), int64(2)},
		"text_array": []any{"x", "y"},
	}
	src := `
def transform(source_record, target_record, pq, target_id=None):
    out = {}
    for k in source_record:
        out[k] = source_record[k]
    out["big_from_script"] = 1 << 70
    out["typed"] = {k: type(v) for k, v in source_record.items()}
    return out
`
	wantTypes := map[string]any{
		"numeric": "decimal", "numeric2": "decimal", "big_int": "decimal", "bigint": "int", "int": "int",
		"float": "float", "bool": "bool", "null": "NoneType", "text": "string", "uuid": "string",
		"bytes": "bytes", "timestamp": "time.time", "zoned": "time.time", "date": "time.time",
		"interval": "time.duration", "jsonb": "dict", "int_array": "list", "text_array": "list",
	}
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			s := compile(t, "values.star", src, opts)
			out, err := s.Transform(context.Background(), TransformInput{SourceID: "1", Source: record})
			require.NoError(t, err)
			require.Equal(t, wantTypes, out.Payload["typed"])
			delete(out.Payload, "typed")
			require.Equal(t, json.Number("1180591620717411303424"), out.Payload["big_from_script"])
			delete(out.Payload, "big_from_script")
			for k, want := range record {
				got := out.Payload[k]
				if wt, ok := want.(time.Time); ok {
					gt, ok := got.(time.Time)
					require.True(t, ok, k)
					require.True(t, wt.Equal(gt), "%s: %v != %v", k, wt, gt)
					_, wo := wt.Zone()
					_, gOff := gt.Zone()
					require.Equal(t, wo, gOff, "%s keeps its offset", k)
					continue
				}
				require.Equal(t, want, got, k)
			}
			require.Equal(t, "12345678901234567890.123456789", string(out.Payload["numeric"].(json.Number)))
		})
	}
}

func TestDecimalArithmetic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want any
	}{
		{`d + decimal("0.01")`, json.Number("12345678901234567890.133456789")},
		{`d - 1`, json.Number("12345678901234567889.123456789")},
		{`decimal("1.10") * 3`, json.Number("3.30")},
		{`2 * decimal("1.5")`, json.Number("3.0")},
		{`-d`, json.Number("-12345678901234567890.123456789")},
		{`decimal("1.00") == decimal("1")`, true},
		{`decimal("2.5") > decimal("2.49")`, true},
		{`decimal("10") / 4`, 2.5},
		{`decimal("1.5") + 0.25`, 1.75},
		{`decimal("2.675").round(2)`, json.Number("2.68")},
		{`decimal("-7.9").int()`, int64(-7)},
		{`decimal("0.5").float()`, 0.5},
		{`str(d)`, "12345678901234567890.123456789"},
		{`json.encode({"amount": d})`, `{"amount":12345678901234567890.123456789}`},
		{`bool(decimal("0.000"))`, false},
		{`len(set([decimal("1.0"), decimal("1.00")]))`, int64(1)},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			src := "def transform(source_record, target_record, pq):\n    d = source_record['d']\n    return {'v': " + tt.expr + "}\n"
			s := compile(t, "d.star", src, Options{Isolation: IsolationNone})
			out, err := s.Transform(context.Background(), TransformInput{Source: map[string]any{"d": json.Number("12345678901234567890.123456789")}})
			require.NoError(t, err)
			require.Equal(t, tt.want, out.Payload["v"])
		})
	}
}

func TestConversionErrors(t *testing.T) {
	t.Parallel()
	type money struct{ cents int }
	tests := []struct {
		name string
		in   map[string]any
		want string
	}{
		{"unknown Go type", map[string]any{"amount": money{5}}, `x.star: source_record["amount"]: unsupported Go type scripting.money (source id 1)`},
		{"unknown nested type", map[string]any{"j": map[string]any{"c": make(chan int)}}, `x.star: source_record["j"]["c"]: unsupported Go type chan int (source id 1)`},
		{"bad numeric", map[string]any{"n": json.Number("12,5")}, `x.star: source_record["n"]: "12,5" is not a decimal number (source id 1)`},
	}
	for iso, opts := range isolations(t) {
		for _, tt := range tests {
			t.Run(iso+"/"+tt.name, func(t *testing.T) {
				s := compile(t, "x.star", "def transform(s, t, pq):\n    return t\n", opts)
				_, err := s.Transform(context.Background(), TransformInput{SourceID: "1", Source: tt.in})
				require.Error(t, err)
				require.Equal(t, tt.want, err.Error())
			})
		}
	}
}

func TestFromStarlarkRefusesCycles(t *testing.T) {
	t.Parallel()
	l := starlark.NewList(nil)
	require.NoError(t, l.Append(l))
	_, err := FromStarlark(l)
	require.ErrorContains(t, err, "nested deeper than 64 levels")
	d := starlark.NewDict(1)
	require.NoError(t, d.SetKey(starlark.MakeInt(1), starlark.None))
	_, err = FromStarlark(d)
	require.EqualError(t, err, "value: dict key 1 is a int, want a string")
	v, err := FromStarlark(starlarktime.Time(time.Unix(0, 0).UTC()))
	require.NoError(t, err)
	require.Equal(t, time.Unix(0, 0).UTC(), v)
}

func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	in := map[string]any{
		"n": json.Number("12345678901234567890.123456789"), "i": int64(-5), "u": uint64(1 << 63),
		"f": 0.1, "s": "x", "b": []byte("y"), "t": time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("", -5*3600)),
		"l": []any{nil, true, false}, "m": map[string]any{"k": []string{"a"}}, "d": time.Second,
	}
	var e encoder
	require.NoError(t, e.record(in, "r"))
	d := decoder{buf: e.buf}
	out := d.record()
	require.NoError(t, d.err)
	require.Equal(t, []any{"a"}, out["m"].(map[string]any)["k"])
	out["m"] = in["m"]
	require.True(t, in["t"].(time.Time).Equal(out["t"].(time.Time)))
	out["t"] = in["t"]
	require.Equal(t, in, out)

	d = decoder{buf: e.buf[:len(e.buf)-3]}
	d.record()
	require.Error(t, d.err, "a cut message is an error, not a panic")
}
