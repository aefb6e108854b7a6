package scripting

import (
	"fmt"
	"hash/fnv"
	"math/big"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Decimal is an exact decimal number: a warehouse numeric column. It keeps
// the digits it was made from, so a value the script does not touch goes
// back out as the same json.Number, byte for byte
// ("12345678901234567890.123456789" stays exactly that).
//
// In Starlark its type is "decimal". It supports str(), comparison with
// another decimal, truth (non-zero), and exact +, - and * with a decimal or
// an int (the result is a decimal); mixing with a float or dividing gives a
// float. Methods: d.float(), d.int() (truncates toward zero), d.round(n)
// (half away from zero, n digits after the point). The predeclared
// decimal(x) makes one from a string, an int or a decimal.
type Decimal struct {
	s string // the exact literal, as in JSON: -?digits[.digits][e[+-]digits]
}

var (
	_ starlark.HasBinary      = Decimal{}
	_ starlark.HasUnary       = Decimal{}
	_ starlark.TotallyOrdered = Decimal{}
	_ starlark.HasAttrs       = Decimal{}
)

// ParseDecimal checks that s is a JSON number literal and wraps it.
func ParseDecimal(s string) (Decimal, error) {
	if !isJSONNumber(s) {
		return Decimal{}, fmt.Errorf("%q is not a decimal number", s)
	}
	return Decimal{s: s}, nil
}

// String returns the exact digits.
func (d Decimal) String() string { return d.s }

// Type is "decimal".
func (d Decimal) Type() string { return "decimal" }

// Freeze does nothing: a decimal is immutable.
func (d Decimal) Freeze() {}

// Truth reports whether d is non-zero.
func (d Decimal) Truth() starlark.Bool {
	r, _, _ := decimalRat(d.s)
	return r != nil && r.Sign() != 0
}

// Hash hashes the numeric value, so that decimal("1.0") and decimal("1.00")
// (which compare equal) hash alike.
func (d Decimal) Hash() (uint32, error) {
	r, _, err := decimalRat(d.s)
	if err != nil {
		return 0, err
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(r.RatString()))
	return h.Sum32(), nil
}

// MarshalJSON makes json.encode write the exact digits.
func (d Decimal) MarshalJSON() ([]byte, error) { return []byte(d.s), nil }

// Cmp compares two decimals by value.
func (d Decimal) Cmp(y starlark.Value, depth int) (int, error) {
	x, _, err := decimalRat(d.s)
	if err != nil {
		return 0, err
	}
	yr, _, err := decimalRat(y.(Decimal).s)
	if err != nil {
		return 0, err
	}
	return x.Cmp(yr), nil
}

// Unary implements -d and +d.
func (d Decimal) Unary(op syntax.Token) (starlark.Value, error) {
	switch op {
	case syntax.PLUS:
		return d, nil
	case syntax.MINUS:
		if strings.HasPrefix(d.s, "-") {
			return Decimal{s: d.s[1:]}, nil
		}
		return Decimal{s: "-" + d.s}, nil
	}
	return nil, nil
}

// Binary implements arithmetic with decimals, ints and floats.
func (d Decimal) Binary(op syntax.Token, y starlark.Value, side starlark.Side) (starlark.Value, error) {
	x, xs, err := decimalRat(d.s)
	if err != nil {
		return nil, err
	}
	var yr *big.Rat
	var ys int
	switch y := y.(type) {
	case Decimal:
		yr, ys, err = decimalRat(y.s)
		if err != nil {
			return nil, err
		}
	case starlark.Int:
		yr = new(big.Rat).SetInt(y.BigInt())
	case starlark.Float:
		xf, _ := x.Float64()
		if side == starlark.Right {
			return starlark.Binary(op, y, starlark.Float(xf))
		}
		return starlark.Binary(op, starlark.Float(xf), y)
	default:
		return nil, nil // not handled: Starlark reports the type error
	}
	l, r, ls, rs := x, yr, xs, ys
	if side == starlark.Right {
		l, r, ls, rs = yr, x, ys, xs
	}
	out := new(big.Rat)
	switch op {
	case syntax.PLUS:
		return Decimal{s: out.Add(l, r).FloatString(max(ls, rs))}, nil
	case syntax.MINUS:
		return Decimal{s: out.Sub(l, r).FloatString(max(ls, rs))}, nil
	case syntax.STAR:
		return Decimal{s: out.Mul(l, r).FloatString(ls + rs)}, nil
	case syntax.SLASH:
		if r.Sign() == 0 {
			return nil, fmt.Errorf("decimal division by zero")
		}
		f, _ := out.Quo(l, r).Float64()
		return starlark.Float(f), nil
	}
	return nil, nil
}

// Attr returns the decimal's methods.
func (d Decimal) Attr(name string) (starlark.Value, error) {
	switch name {
	case "float", "int", "round":
		return starlark.NewBuiltin(name, d.method).BindReceiver(d), nil
	}
	return nil, nil
}

// AttrNames lists the decimal's methods.
func (d Decimal) AttrNames() []string { return []string{"float", "int", "round"} }

func (d Decimal) method(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r, _, err := decimalRat(d.s)
	if err != nil {
		return nil, err
	}
	switch b.Name() {
	case "float":
		if err := starlark.UnpackPositionalArgs("decimal.float", args, kwargs, 0); err != nil {
			return nil, err
		}
		f, _ := r.Float64()
		return starlark.Float(f), nil
	case "int":
		if err := starlark.UnpackPositionalArgs("decimal.int", args, kwargs, 0); err != nil {
			return nil, err
		}
		return starlark.MakeBigInt(new(big.Int).Quo(r.Num(), r.Denom())), nil
	default: // round
		var n int
		if err := starlark.UnpackPositionalArgs("decimal.round", args, kwargs, 0, &n); err != nil {
			return nil, err
		}
		if n < 0 || n > 1000 {
			return nil, fmt.Errorf("decimal.round: digits must be between 0 and 1000, got %d", n)
		}
		return Decimal{s: r.FloatString(n)}, nil
	}
}

// decimalRat parses a JSON number literal into an exact rational and the
// number of digits after the point it needs.
func decimalRat(s string) (*big.Rat, int, error) {
	if !isJSONNumber(s) {
		return nil, 0, fmt.Errorf("%q is not a decimal number", s)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, 0, fmt.Errorf("%q is not a decimal number", s)
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		if _, err := fmt.Sscan(s[i+1:], &exp); err != nil {
			return nil, 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	scale := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		scale = len(mant) - i - 1
	}
	scale -= exp
	if scale < 0 {
		scale = 0
	}
	if scale > 10000 {
		return nil, 0, fmt.Errorf("%q has too many digits after the point", s)
	}
	return r, scale, nil
}

// isJSONNumber reports whether s is a number as JSON writes it.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == start || (s[start] == '0' && i-start > 1) {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == fs {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		es := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == es || i-es > 6 {
			return false
		}
	}
	return i == len(s)
}

// makeDecimal is the predeclared decimal(x).
func makeDecimal(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &x); err != nil {
		return nil, err
	}
	switch x := x.(type) {
	case Decimal:
		return x, nil
	case starlark.Int:
		return Decimal{s: x.String()}, nil
	case starlark.String:
		d, err := ParseDecimal(strings.TrimSpace(string(x)))
		if err != nil {
			return nil, fmt.Errorf("decimal: %w", err)
		}
		return d, nil
	}
	return nil, fmt.Errorf("decimal: got a %s, want a string, an int or a decimal (a float is not exact: pass str(x) to say which digits you mean)", x.Type())
}
