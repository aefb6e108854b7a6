package scripting

import (
	"context"
	"testing"

	"go.starlark.net/starlark"

	"github.com/stretchr/testify/require"
)

func TestModules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want any
	}{
		{`re.sub(r"(\w+)@(\w+)", r"\2 at \1", "ann@acme and bob@corp")`, "acme at ann and corp at bob"},
		{`re.sub(r"\d", "$", "a1b2", count=1)`, "a$b2"},
		{`re.sub(r"(?P<user>\w+)@", r"\g<user> ", "ann@x")`, "ann x"},
		{`re.findall(r"\d+", "a12b3")`, []any{"12", "3"}},
		{`re.findall(r"(\w)=(\d)", "a=1 b=2")`, []any{[]any{"a", "1"}, []any{"b", "2"}}},
		{`re.match(r"\d+", "x12") == None`, true},
		{`re.search(r"(\d+)", "x12").group(1)`, "12"},
		{`re.fullmatch(r"[A-Z]{2}\d+", "BE0123").text`, "BE0123"},
		{`re.search(r"(?P<cc>[A-Z]{2})(?P<n>\d+)", "vat: BE0123").named`, map[string]any{"cc": "BE", "n": "0123"}},
		{`re.split(r"[,;]\s*", "a, b;c")`, []any{"a", "b", "c"}},
		{`re.escape("1.5")`, `1\.5`},
		{`strings.zfill("-42", 6)`, "-00042"},
		{`strings.pad_left("7", 3, "0")`, "007"},
		{`strings.pad_right("ab", 4, ".")`, "ab.."},
		{`strings.truncate("Hello world", 8, "…")`, "Hello w…"},
		{`strings.squash("  a \n\t b  ")`, "a b"},
		{`strings.ascii("Zoë Ångström-Łódź")`, "Zoe Angstrom-Lodz"},
		{`strings.slug("Café de l'Été!")`, "cafe-de-l-ete"},
		{`strings.digits("+32 (0)475 12.34.56")`, "320475123456"},
		{`strings.is_blank("  ")`, true},
		{`strings.coalesce(None, "", "x", "y")`, "x"},
		{`json.decode('{"a": [1, 2.5]}')`, map[string]any{"a": []any{int64(1), 2.5}}},
		{`json.encode({"b": None})`, `{"b":null}`},
		{`math.floor(2.7)`, int64(2)},
		{`time.parse_time("2024-03-01T10:00:00Z").year`, int64(2024)},
		{`str(time.parse_duration("90m"))`, "1h30m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			src := "def transform(source_record, target_record, pq):\n    return {'v': " + tt.expr + "}\n"
			s := compile(t, "m.star", src, Options{Isolation: IsolationNone})
			out, err := s.Transform(context.Background(), TransformInput{})
			require.NoError(t, err)
			require.Equal(t, tt.want, out.Payload["v"])
		})
	}
}

func TestModuleErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ expr, want string }{
		{`re.sub("(", "", "x")`, "m.star:2: re.sub: error parsing regexp: missing closing ): `(`"},
		{`strings.zfill("1", 1 << 40)`, "m.star:2: strings.zfill: width 1099511627776 is too large"},
		{`decimal(1.5)`, "m.star:2: decimal: got a float, want a string, an int or a decimal (a float is not exact: pass str(x) to say which digits you mean)"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			src := "def transform(source_record, target_record, pq):\n    return {'v': " + tt.expr + "}\n"
			s := compile(t, "m.star", src, Options{Isolation: IsolationNone})
			_, err := s.Transform(context.Background(), TransformInput{})
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestSafeBuiltinTurnsPanicIntoError(t *testing.T) {
	t.Parallel()
	b := safeBuiltin(starlark.NewBuiltin("boom", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		var m map[string]int
		m["x"] = 1 //lint:ignore SA5000 the panic is what this test needs
		return starlark.None, nil
	}))
	_, err := starlark.Call(&starlark.Thread{}, b, nil, nil)
	require.ErrorContains(t, err, "boom: internal error: assignment to entry in nil map")
}
