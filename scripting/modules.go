package scripting

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"

	"go.starlark.net/lib/json"
	"go.starlark.net/lib/math"
	starlarktime "go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"golang.org/x/text/unicode/norm"
)

// moduleNames are Ferry's shipped modules: predeclared in every script and
// loadable by name (load("re", "sub")).
var moduleNames = []string{"json", "math", "re", "strings", "time"}

// stdlib builds the predeclared names of a script: the shipped modules,
// decimal() and struct(). Each Script gets its own (no package state); every
// builtin is wrapped so a Go panic inside it becomes a Starlark error.
func stdlib() starlark.StringDict {
	re := &regexModule{cache: map[string]*regexp.Regexp{}}
	return starlark.StringDict{
		"json":    safeModule(json.Module),
		"math":    safeModule(math.Module),
		"time":    safeModule(starlarktime.Module),
		"re":      re.module(),
		"strings": stringsModule(),
		"decimal": safeBuiltin(starlark.NewBuiltin("decimal", makeDecimal)),
		"struct":  safeBuiltin(starlark.NewBuiltin("struct", starlarkstruct.Make)),
	}
}

// isShippedModule reports whether name is one of Ferry's modules.
func isShippedModule(name string) bool { return slices.Contains(moduleNames, name) }

// moduleGlobals is what load("json", ...) binds from: the module's members
// and the module itself under its own name.
func moduleGlobals(predeclared starlark.StringDict, name string) starlark.StringDict {
	mod, ok := predeclared[name].(*starlarkstruct.Module)
	if !ok {
		return nil
	}
	out := make(starlark.StringDict, len(mod.Members)+1)
	for k, v := range mod.Members {
		out[k] = v
	}
	out[name] = mod
	return out
}

// safeModule copies a module, wrapping each builtin with safeBuiltin.
func safeModule(m *starlarkstruct.Module) *starlarkstruct.Module {
	members := make(starlark.StringDict, len(m.Members))
	for k, v := range m.Members {
		if b, ok := v.(*starlark.Builtin); ok {
			v = safeBuiltin(b)
		}
		members[k] = v
	}
	return &starlarkstruct.Module{Name: m.Name, Members: members}
}

// safeBuiltin turns a Go panic inside b into an error of the call.
func safeBuiltin(b *starlark.Builtin) *starlark.Builtin {
	name := b.Name()
	return starlark.NewBuiltin(name, func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (v starlark.Value, err error) {
		defer func() {
			if r := recover(); r != nil {
				v, err = nil, fmt.Errorf("%s: internal error: %v", name, r)
			}
		}()
		return b.CallInternal(thread, args, kwargs)
	})
}

type builtinFunc = func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

func newModule(name string, funcs map[string]builtinFunc) *starlarkstruct.Module {
	members := make(starlark.StringDict, len(funcs))
	for k, fn := range funcs {
		members[k] = safeBuiltin(starlark.NewBuiltin(name+"."+k, fn))
	}
	return &starlarkstruct.Module{Name: name, Members: members}
}

// --- re ---

// regexModule wraps Go's regexp (RE2 syntax: no backreferences, linear
// time, so no pattern can hang a call). Compiled patterns are cached per
// Script.
type regexModule struct {
	mu    sync.Mutex
	cache map[string]*regexp.Regexp
}

const regexCacheSize = 256

func (m *regexModule) module() *starlarkstruct.Module {
	return newModule("re", map[string]builtinFunc{
		"match":     m.match,
		"fullmatch": m.match,
		"search":    m.match,
		"findall":   m.findall,
		"sub":       m.sub,
		"split":     m.split,
		"escape":    reEscape,
	})
}

func (m *regexModule) compile(fn, pattern string) (*regexp.Regexp, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if re, ok := m.cache[pattern]; ok {
		return re, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	if len(m.cache) >= regexCacheSize {
		clear(m.cache)
	}
	m.cache[pattern] = re
	return re, nil
}

// match implements re.match (anchored at the start), re.fullmatch (the
// whole string) and re.search (anywhere). Each returns None or a match
// struct: .text, .groups (a tuple, None for a group that did not take
// part), .named (a dict of named groups), .start, .end and .group(n=0).
func (m *regexModule) match(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pattern, s string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pattern", &pattern, "string", &s); err != nil {
		return nil, err
	}
	switch b.Name() {
	case "re.match":
		pattern = `^(?:` + pattern + `)`
	case "re.fullmatch":
		pattern = `^(?:` + pattern + `)$`
	}
	re, err := m.compile(b.Name(), pattern)
	if err != nil {
		return nil, err
	}
	loc := re.FindStringSubmatchIndex(s)
	if loc == nil {
		return starlark.None, nil
	}
	return matchValue(re, s, loc), nil
}

func matchValue(re *regexp.Regexp, s string, loc []int) starlark.Value {
	n := len(loc) / 2
	all := make([]starlark.Value, n)
	for i := range n {
		if loc[2*i] < 0 {
			all[i] = starlark.None
		} else {
			all[i] = starlark.String(s[loc[2*i]:loc[2*i+1]])
		}
	}
	named := starlark.NewDict(0)
	for i, name := range re.SubexpNames() {
		if name != "" {
			_ = named.SetKey(starlark.String(name), all[i])
		}
	}
	group := func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var g starlark.Value = starlark.MakeInt(0)
		if err := starlark.UnpackPositionalArgs("group", args, kwargs, 0, &g); err != nil {
			return nil, err
		}
		if name, ok := g.(starlark.String); ok {
			v, found, _ := named.Get(name)
			if !found {
				return nil, fmt.Errorf("group: no group named %s", name.String())
			}
			return v, nil
		}
		i, err := starlark.AsInt32(g)
		if err != nil || i < 0 || i >= n {
			return nil, fmt.Errorf("group: no group %s", g.String())
		}
		return all[i], nil
	}
	return starlarkstruct.FromStringDict(starlark.String("match"), starlark.StringDict{
		"text":   all[0],
		"groups": starlark.Tuple(all[1:]),
		"named":  named,
		"start":  starlark.MakeInt(len([]rune(s[:loc[0]]))),
		"end":    starlark.MakeInt(len([]rune(s[:loc[1]]))),
		"group":  starlark.NewBuiltin("group", group),
	})
}

// findall returns every match: strings when the pattern has no group, the
// group's strings for one group, tuples for several (as Python does).
func (m *regexModule) findall(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pattern, s string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pattern", &pattern, "string", &s); err != nil {
		return nil, err
	}
	re, err := m.compile(b.Name(), pattern)
	if err != nil {
		return nil, err
	}
	var out []starlark.Value
	for _, sm := range re.FindAllStringSubmatch(s, -1) {
		switch len(sm) {
		case 1:
			out = append(out, starlark.String(sm[0]))
		case 2:
			out = append(out, starlark.String(sm[1]))
		default:
			t := make(starlark.Tuple, len(sm)-1)
			for i, g := range sm[1:] {
				t[i] = starlark.String(g)
			}
			out = append(out, t)
		}
	}
	return starlark.NewList(out), nil
}

// sub replaces matches. The replacement uses Python's \1 and \g<name> for
// groups; count=0 replaces all.
func (m *regexModule) sub(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pattern, repl, s string
	count := 0
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pattern", &pattern, "repl", &repl, "string", &s, "count?", &count); err != nil {
		return nil, err
	}
	re, err := m.compile(b.Name(), pattern)
	if err != nil {
		return nil, err
	}
	tmpl := pythonRepl(repl)
	n := -1
	if count > 0 {
		n = count
	}
	var out []byte
	last := 0
	for _, loc := range re.FindAllStringSubmatchIndex(s, n) {
		out = append(out, s[last:loc[0]]...)
		out = re.ExpandString(out, tmpl, s, loc)
		last = loc[1]
	}
	out = append(out, s[last:]...)
	return starlark.String(out), nil
}

// pythonRepl turns a Python replacement (\1, \g<name>, a literal $) into a
// Go template for Regexp.Expand.
func pythonRepl(repl string) string {
	var b strings.Builder
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c == '$' {
			b.WriteString("$$")
			continue
		}
		if c != '\\' || i+1 == len(repl) {
			b.WriteByte(c)
			continue
		}
		next := repl[i+1]
		switch {
		case next >= '0' && next <= '9':
			j := i + 1
			for j < len(repl) && repl[j] >= '0' && repl[j] <= '9' {
				j++
			}
			b.WriteString("${" + repl[i+1:j] + "}")
			i = j - 1
		case next == 'g' && i+2 < len(repl) && repl[i+2] == '<':
			end := strings.IndexByte(repl[i+3:], '>')
			if end < 0 {
				b.WriteByte(c)
				continue
			}
			b.WriteString("${" + repl[i+3:i+3+end] + "}")
			i = i + 3 + end
		case next == '\\':
			b.WriteByte('\\')
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (m *regexModule) split(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pattern, s string
	maxsplit := 0
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pattern", &pattern, "string", &s, "maxsplit?", &maxsplit); err != nil {
		return nil, err
	}
	re, err := m.compile(b.Name(), pattern)
	if err != nil {
		return nil, err
	}
	n := -1
	if maxsplit > 0 {
		n = maxsplit + 1
	}
	parts := re.Split(s, n)
	out := make([]starlark.Value, len(parts))
	for i, p := range parts {
		out[i] = starlark.String(p)
	}
	return starlark.NewList(out), nil
}

func reEscape(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s string
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &s); err != nil {
		return nil, err
	}
	return starlark.String(regexp.QuoteMeta(s)), nil
}

// --- strings ---

// stringsModule holds the helpers mapping code reaches for that Starlark's
// string methods lack.
func stringsModule() *starlarkstruct.Module {
	return newModule("strings", map[string]builtinFunc{
		"pad_left":  padFunc(true),
		"pad_right": padFunc(false),
		"zfill":     zfill,
		"truncate":  truncate,
		"squash":    squash,
		"ascii":     asciiFold,
		"slug":      slug,
		"digits":    digits,
		"is_blank":  isBlank,
		"coalesce":  coalesce,
	})
}

func oneString(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (string, error) {
	var s string
	err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &s)
	return s, err
}

// maxPad bounds the width of pad_left/pad_right/zfill: a width is one step
// but could otherwise ask for gigabytes.
const maxPad = 1 << 20

func padFunc(left bool) builtinFunc {
	return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var s string
		var width int
		fill := " "
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "s", &s, "width", &width, "fill?", &fill); err != nil {
			return nil, err
		}
		if len([]rune(fill)) != 1 {
			return nil, fmt.Errorf("%s: fill must be one character, got %q", b.Name(), fill)
		}
		if width > maxPad {
			return nil, fmt.Errorf("%s: width %d is too large", b.Name(), width)
		}
		n := width - len([]rune(s))
		if n <= 0 {
			return starlark.String(s), nil
		}
		pad := strings.Repeat(fill, n)
		if left {
			return starlark.String(pad + s), nil
		}
		return starlark.String(s + pad), nil
	}
}

// zfill pads with zeros on the left, after a sign: zfill("-42", 5) == "-0042".
func zfill(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s string
	var width int
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 2, &s, &width); err != nil {
		return nil, err
	}
	if width > maxPad {
		return nil, fmt.Errorf("%s: width %d is too large", b.Name(), width)
	}
	sign := ""
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		sign, s = s[:1], s[1:]
	}
	n := width - len(sign) - len([]rune(s))
	if n <= 0 {
		return starlark.String(sign + s), nil
	}
	return starlark.String(sign + strings.Repeat("0", n) + s), nil
}

// truncate cuts s to at most n characters, the suffix included.
func truncate(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s string
	var n int
	suffix := ""
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "s", &s, "n", &n, "suffix?", &suffix); err != nil {
		return nil, err
	}
	r := []rune(s)
	if len(r) <= n {
		return starlark.String(s), nil
	}
	sr := []rune(suffix)
	keep := n - len(sr)
	if keep < 0 {
		return starlark.String(string(sr[:max(n, 0)])), nil
	}
	return starlark.String(string(r[:keep]) + suffix), nil
}

// squash trims s and collapses each run of white space to one space.
func squash(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	s, err := oneString(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	return starlark.String(strings.Join(strings.Fields(s), " ")), nil
}

func foldASCII(s string) string {
	var b strings.Builder
	for _, r := range norm.NFKD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		switch r {
		case 'ß':
			b.WriteString("ss")
		case 'æ':
			b.WriteString("ae")
		case 'Æ':
			b.WriteString("AE")
		case 'ø':
			b.WriteByte('o')
		case 'Ø':
			b.WriteByte('O')
		case 'ł':
			b.WriteByte('l')
		case 'Ł':
			b.WriteByte('L')
		case 'đ':
			b.WriteByte('d')
		case 'Đ':
			b.WriteByte('D')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// asciiFold removes accents: ascii("Zoë Ångström") == "Zoe Angstrom".
func asciiFold(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	s, err := oneString(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	return starlark.String(foldASCII(s)), nil
}

// slug makes a lower-case, dash-separated ASCII identifier:
// slug("Café de l'Été!") == "cafe-de-l-ete".
func slug(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	s, err := oneString(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	dash := false
	for _, r := range strings.ToLower(foldASCII(s)) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && out.Len() > 0 {
				out.WriteByte('-')
			}
			out.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return starlark.String(out.String()), nil
}

// digits keeps only the digits: digits("+32 (0)475 12.34.56") == "320475123456".
func digits(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	s, err := oneString(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			out.WriteRune(r)
		}
	}
	return starlark.String(out.String()), nil
}

// isBlank reports whether x is None or a string of only white space.
func isBlank(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &x); err != nil {
		return nil, err
	}
	switch x := x.(type) {
	case starlark.NoneType:
		return starlark.True, nil
	case starlark.String:
		return starlark.Bool(strings.TrimSpace(string(x)) == ""), nil
	}
	return starlark.False, nil
}

// coalesce returns its first argument that is neither None nor blank, or None.
func coalesce(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(kwargs) > 0 {
		return nil, fmt.Errorf("%s: unexpected keyword arguments", b.Name())
	}
	for _, x := range args {
		switch x := x.(type) {
		case starlark.NoneType:
			continue
		case starlark.String:
			if strings.TrimSpace(string(x)) == "" {
				continue
			}
		}
		return x, nil
	}
	return starlark.None, nil
}
