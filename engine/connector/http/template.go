package httptarget

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/ferry-sync/ferry/internal/jsonx"
)

// Templates build requests from settings: the JSON of a batch or a login,
// the path, query and body of a lookup. A template is JSON as the settings
// hold it, in which strings may hold {{…}} actions:
//
//   - a string that is one placeholder, like "{{record}}" or
//     "{{value \"email\"}}", is replaced by the value itself, typed (an
//     object, a number, a string);
//   - any other string with actions is a Go text/template whose output
//     stays a string, JSON-escaped when the body is written;
//   - in a lookup body, a list element {"$each_match": {…}} stands for one
//     element per match field, in which {{field}} and {{value}} are that
//     field and its value.
//
// Each place escapes values for itself: JSON strings by the encoder, query
// values by URL encoding of the whole value, and path templates by escaping
// the output of every action (as html/template does: the escaper is added
// to each action when the template is compiled). Inside a filter language
// (PocketBase's filter, a SQL-like where) quoting is the template's: the
// quote and dquote functions quote and backslash-escape.

// Placeholder sets: which names a template of each place may use.
var (
	batchBodyNames = []string{"items"}
	batchItemNames = []string{"record", "id", "correlation_id"}
	loginNames     = []string{"username", "password"}
	lookupNames    = []string{"value", "fields", "field"}
)

// jkind is the kind of a template node.
type jkind int

const (
	jLiteral     jkind = iota // raw: encoded JSON
	jObject                   // keys (encoded, with the colon) and kids
	jArray                    // kids
	jPlaceholder              // name, arg: replaced by a typed value
	jString                   // str: a text template whose output is a string
	jEach                     // kids[0] rendered once per match field
)

type jnode struct {
	kind jkind
	raw  []byte
	keys [][]byte
	kids []*jnode
	name string
	arg  string
	str  *stext
}

// placeholderRE matches a string that is one placeholder: {{name}} or
// {{name "arg"}}.
var placeholderRE = regexp.MustCompile(`^\{\{\s*([a-z_]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\}\}$`)

// compileJSON compiles a template value (as decoded from the settings, with
// json.Number numbers) for the placeholders names allows. path names the
// setting in errors.
func compileJSON(v any, names []string, path string) (*jnode, error) {
	switch x := v.(type) {
	case string:
		if m := placeholderRE.FindStringSubmatch(x); m != nil {
			if !slices.Contains(names, m[1]) {
				return nil, problem(path, "{{%s}} is not known here: use %s", m[1], placeholderList(names))
			}
			arg := m[2]
			if arg != "" {
				unq, err := strconv.Unquote(`"` + arg + `"`)
				if err != nil {
					return nil, problem(path, "bad argument in %s", x)
				}
				arg = unq
			}
			return &jnode{kind: jPlaceholder, name: m[1], arg: arg}, nil
		}
		if !strings.Contains(x, "{{") {
			return literal(x)
		}
		st, err := compileText(x, names, path, nil)
		if err != nil {
			return nil, err
		}
		return &jnode{kind: jString, str: st}, nil
	case map[string]any:
		if each, ok := x["$each_match"]; ok {
			return nil, problem(path, "$each_match %v goes in a list, as its only key of an element", each)
		}
		keys := slices.Sorted(mapsKeys(x))
		n := &jnode{kind: jObject}
		for _, k := range keys {
			kid, err := compileJSON(x[k], names, path+"."+k)
			if err != nil {
				return nil, err
			}
			enc := jsonx.AppendString(nil, k)
			n.keys = append(n.keys, append(enc, ':'))
			n.kids = append(n.kids, kid)
		}
		return n, nil
	case []any:
		n := &jnode{kind: jArray}
		for i, item := range x {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			if m, ok := item.(map[string]any); ok && len(m) == 1 {
				if inner, ok := m["$each_match"]; ok {
					if !slices.Contains(names, "field") {
						return nil, problem(ipath, "$each_match is for lookups")
					}
					kid, err := compileJSON(inner, names, ipath+".$each_match")
					if err != nil {
						return nil, err
					}
					n.kids = append(n.kids, &jnode{kind: jEach, kids: []*jnode{kid}})
					continue
				}
			}
			kid, err := compileJSON(item, names, ipath)
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, kid)
		}
		return n, nil
	default:
		return literal(x)
	}
}

func literal(v any) (*jnode, error) {
	b, err := jsonx.Encode(v)
	if err != nil {
		return nil, err
	}
	return &jnode{kind: jLiteral, raw: b}, nil
}

func placeholderList(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "{{" + n + "}}"
	}
	return strings.Join(out, ", ")
}

// uses reports whether the template uses placeholder name anywhere.
func (n *jnode) uses(name string) bool {
	if n == nil {
		return false
	}
	if n.kind == jPlaceholder && n.name == name {
		return true
	}
	if n.kind == jString && n.str.uses(name) {
		return true
	}
	for _, k := range n.kids {
		if k.uses(name) {
			return true
		}
	}
	return false
}

// renderEnv gives a template its values.
type renderEnv interface {
	// typed appends the JSON of placeholder name (with arg) to dst.
	typed(dst []byte, name, arg string) ([]byte, error)
	// text renders a text template.
	text(st *stext) (string, error)
	// each renders kid once per match field (lookups only).
	each(dst []byte, kid *jnode) ([]byte, error)
}

// render appends the JSON of n to dst.
func render(dst []byte, n *jnode, env renderEnv) ([]byte, error) {
	var err error
	switch n.kind {
	case jLiteral:
		return append(dst, n.raw...), nil
	case jPlaceholder:
		return env.typed(dst, n.name, n.arg)
	case jString:
		s, err := env.text(n.str)
		if err != nil {
			return dst, err
		}
		return jsonx.AppendString(dst, s), nil
	case jObject:
		dst = append(dst, '{')
		for i, k := range n.keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, k...)
			if dst, err = render(dst, n.kids[i], env); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case jArray:
		dst = append(dst, '[')
		first := true
		for _, k := range n.kids {
			mark := len(dst)
			if !first {
				dst = append(dst, ',')
			}
			if k.kind == jEach {
				before := len(dst)
				if dst, err = env.each(dst, k.kids[0]); err != nil {
					return dst, err
				}
				if len(dst) == before { // no field: no element, no comma
					dst = dst[:mark]
					continue
				}
			} else if dst, err = render(dst, k, env); err != nil {
				return dst, err
			}
			first = false
		}
		return append(dst, ']'), nil
	}
	return dst, fmt.Errorf("unknown template node")
}

// stext is a string template: a fast list of parts when it uses only plain
// {{name}} placeholders (batch items: "/records/{{id}}"), a text/template
// otherwise.
type stext struct {
	src   string
	parts []spart
	tmpl  *template.Template
}

type spart struct {
	lit  string
	name string // "" for a literal part
}

var simpleActionRE = regexp.MustCompile(`\{\{\s*([a-z_]+)\s*\}\}`)

// stubFuncs are the functions text templates may call; they are bound to
// the values of one render by bind.
var stubFuncs = template.FuncMap{
	"value":          func(...string) (string, error) { return "", nil },
	"field":          func() string { return "" },
	"fields":         func() []string { return nil },
	"quote":          quote,
	"dquote":         dquote,
	"json":           jsonText,
	"lower":          strings.ToLower,
	"upper":          strings.ToUpper,
	"join":           strings.Join,
	"pathescape":     url.PathEscape,
	"id":             func() string { return "" },
	"correlation_id": func() string { return "" },
	"username":       func() string { return "" },
	"password":       func() string { return "" },
	"record":         func() string { return "" },
	"items":          func() string { return "" },
}

// compileText compiles a string template. escape, when set, names a
// function added to the end of every action's pipeline (pathescape for
// paths).
func compileText(src string, names []string, path string, escape *string) (*stext, error) {
	st := &stext{src: src}
	if escape == nil {
		rest := src
		simple := true
		for rest != "" {
			loc := simpleActionRE.FindStringSubmatchIndex(rest)
			if loc == nil {
				if strings.Contains(rest, "{{") {
					simple = false
				}
				st.parts = append(st.parts, spart{lit: rest})
				break
			}
			if strings.Contains(rest[:loc[0]], "{{") {
				simple = false
				break
			}
			name := rest[loc[2]:loc[3]]
			if !slices.Contains(names, name) || name == "fields" || name == "value" {
				simple = false
				break
			}
			if loc[0] > 0 {
				st.parts = append(st.parts, spart{lit: rest[:loc[0]]})
			}
			st.parts = append(st.parts, spart{name: name})
			rest = rest[loc[1]:]
		}
		if simple {
			return st, nil
		}
		st.parts = nil
	}
	funcs := template.FuncMap{}
	for k, f := range stubFuncs {
		funcs[k] = f
	}
	tmpl, err := template.New(path).Option("missingkey=error").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, problem(path, "%s", strings.TrimPrefix(err.Error(), "template: "+path+":"))
	}
	if err := checkNames(tmpl.Tree.Root, names, path); err != nil {
		return nil, err
	}
	if escape != nil {
		escapeActions(tmpl.Tree.Root, *escape)
	}
	st.tmpl = tmpl
	return st, nil
}

// checkNames refuses placeholders that the place does not know (functions
// that are not placeholders, like quote, are always allowed).
func checkNames(node parse.Node, names []string, path string) error {
	placeholders := []string{"value", "field", "fields", "id", "correlation_id", "username", "password", "record", "items"}
	var err error
	var walk func(parse.Node)
	walk = func(node parse.Node) {
		if err != nil || node == nil {
			return
		}
		switch n := node.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.IdentifierNode:
			if slices.Contains(placeholders, n.Ident) && !slices.Contains(names, n.Ident) {
				err = problem(path, "{{%s}} is not known here: use %s", n.Ident, placeholderList(names))
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		}
	}
	walk(node)
	return err
}

// escapeActions appends fn to the pipeline of every action that prints.
func escapeActions(node parse.Node, fn string) {
	switch n := node.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			escapeActions(c, fn)
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) == 0 {
			n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
				NodeType: parse.NodeCommand,
				Args:     []parse.Node{parse.NewIdentifier(fn).SetTree(nil).SetPos(n.Pos)},
			})
		}
	case *parse.IfNode:
		escapeActions(n.List, fn)
		escapeActions(n.ElseList, fn)
	case *parse.RangeNode:
		escapeActions(n.List, fn)
		escapeActions(n.ElseList, fn)
	case *parse.WithNode:
		escapeActions(n.List, fn)
		escapeActions(n.ElseList, fn)
	}
}

func (st *stext) uses(name string) bool {
	if st.tmpl == nil {
		for _, p := range st.parts {
			if p.name == name {
				return true
			}
		}
		return false
	}
	return strings.Contains(st.src, name)
}

// execute runs a text template with funcs bound to one render's values.
func (st *stext) execute(funcs template.FuncMap) (string, error) {
	t, err := st.tmpl.Clone()
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := t.Funcs(funcs).Execute(&buf, nil); err != nil {
		return "", unwrapExecError(err)
	}
	return buf.String(), nil
}

// unwrapExecError keeps what a template function said, without
// text/template's position prefix.
func unwrapExecError(err error) error {
	var ee template.ExecError
	msg := err.Error()
	if e, ok := err.(template.ExecError); ok {
		ee = e
		msg = ee.Err.Error()
	}
	if i := strings.LastIndex(msg, ": error calling "); i >= 0 {
		if j := strings.Index(msg[i+len(": error calling "):], ": "); j >= 0 {
			msg = msg[i+len(": error calling ")+j+2:]
		}
	}
	return fmt.Errorf("%s", msg)
}

// quote writes s as a single-quoted literal of a filter language:
// backslashes and single quotes are backslash-escaped (PocketBase's
// filter, many SQL-like query parameters).
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// dquote writes s as a double-quoted literal, escaping \ and ".
func dquote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// jsonText writes v as JSON.
func jsonText(v any) (string, error) {
	b, err := jsonx.Encode(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// decodeTemplate turns a template given in Go values (tests, or JSON
// decoded without UseNumber) into JSON values with exact numbers.
func decodeTemplate(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeJSON(b)
}
