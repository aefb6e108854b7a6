package httptarget

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/internal/jsonx"
)

// lookup is a Lookup compiled: its templates parsed and checked.
type lookup struct {
	method      string
	path        *stext // nil: the path has no action
	rawPath     string
	query       map[string]*stext
	queryOrder  []string
	body        *jnode // nil: no body
	legacy      bool   // no query or body: the match fields are the query
	resultsPath string
	idPath      string
	fieldsPath  string
}

func resolveLookup(path string, l Lookup, bodyKey string) (*lookup, error) {
	out := &lookup{
		method:      strings.ToUpper(l.Method),
		rawPath:     l.Path,
		resultsPath: l.ResultsPath,
		idPath:      l.IDPath,
		fieldsPath:  l.FieldsPath,
		legacy:      l.Query == nil && l.Body == nil && !strings.Contains(l.Path, "{{"),
	}
	if out.method == "" {
		out.method = http.MethodGet
		if l.Body != nil {
			out.method = http.MethodPost
		}
	}
	if out.method != http.MethodGet && out.method != http.MethodPost {
		return nil, problem(path+".method", "%s: a lookup is a GET or a POST (a search with a body)", l.Method)
	}
	if out.method == http.MethodGet && l.Body != nil {
		return nil, problem(path+".body", "a GET has no body: use method POST")
	}
	if !strings.HasPrefix(l.Path, "/") {
		return nil, problem(path+".path", "%q must start with /", l.Path)
	}
	if strings.Contains(l.Path, "{{") {
		esc := "pathescape"
		st, err := compileText(l.Path, lookupNames, path+".path", &esc)
		if err != nil {
			return nil, err
		}
		out.path = st
	} else if _, err := http.NewRequest(out.method, "http://example.invalid"+l.Path, nil); err != nil {
		return nil, problem(path+".path", "%v", err)
	}
	if l.Query != nil {
		out.query = map[string]*stext{}
		for _, k := range slices.Sorted(maps.Keys(l.Query)) {
			st, err := compileText(l.Query[k], lookupNames, path+".query."+k, nil)
			if err != nil {
				return nil, err
			}
			out.query[k] = st
			out.queryOrder = append(out.queryOrder, k)
		}
	}
	if l.Body != nil {
		body, err := decodeTemplate(l.Body)
		if err != nil {
			return nil, problem(path+".body", "%v", err)
		}
		if out.body, err = compileJSON(body, lookupNames, path+".body"); err != nil {
			return nil, err
		}
	}
	if out.resultsPath == "" {
		out.resultsPath = DefaultResultsPath
	}
	if out.idPath == "" {
		out.idPath = DefaultIDPath
	}
	if out.fieldsPath == "" {
		out.fieldsPath = bodyKey
	}
	return out, nil
}

// lookupEnv renders a lookup's templates for one match.
type lookupEnv struct {
	match  map[string]any
	fields []string
	field  string // the current field, in $each_match
}

func (e *lookupEnv) valueOf(field string) (any, error) {
	v, ok := e.match[field]
	if !ok {
		return nil, fmt.Errorf("the lookup uses field %s, but the record is looked up by %s", field, strings.Join(e.fields, ", "))
	}
	if v == nil {
		return nil, fmt.Errorf("cannot match on null (field %s)", field)
	}
	return v, nil
}

func (e *lookupEnv) typed(dst []byte, name, arg string) ([]byte, error) {
	switch name {
	case "value":
		if arg == "" {
			arg = e.field
		}
		v, err := e.valueOf(arg)
		if err != nil {
			return dst, err
		}
		if _, err := queryValue(v); err != nil {
			return dst, fmt.Errorf("field %s: %w", arg, err)
		}
		out, err := jsonx.Encode(v)
		if err != nil {
			return dst, err
		}
		return append(dst, out...), nil
	case "fields":
		out, _ := jsonx.Encode(anyStrings(e.fields))
		return append(dst, out...), nil
	case "field":
		return jsonx.AppendString(dst, e.field), nil
	}
	return dst, fmt.Errorf("{{%s}} is not known in a lookup", name)
}

func anyStrings(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (e *lookupEnv) funcs() template.FuncMap {
	return template.FuncMap{
		"value": func(args ...string) (string, error) {
			field := e.field
			if len(args) > 0 {
				field = args[0]
			}
			if field == "" {
				return "", fmt.Errorf("value needs a field name: {{value \"email\"}}")
			}
			v, err := e.valueOf(field)
			if err != nil {
				return "", err
			}
			s, err := queryValue(v)
			if err != nil {
				return "", fmt.Errorf("field %s: %w", field, err)
			}
			return s, nil
		},
		"field":  func() string { return e.field },
		"fields": func() []string { return e.fields },
	}
}

func (e *lookupEnv) text(st *stext) (string, error) {
	if st.tmpl == nil {
		var sb strings.Builder
		for _, p := range st.parts {
			switch p.name {
			case "":
				sb.WriteString(p.lit)
			case "field":
				sb.WriteString(e.field)
			default:
				return "", fmt.Errorf("{{%s}} is not known in a lookup", p.name)
			}
		}
		return sb.String(), nil
	}
	return st.execute(e.funcs())
}

func (e *lookupEnv) each(dst []byte, kid *jnode) ([]byte, error) {
	inner := *e
	for i, f := range e.fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		inner.field = f
		var err error
		if dst, err = render(dst, kid, &inner); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// Find looks records up through the object's lookup: a GET whose query
// parameters are the match fields, or the request its templates build.
// Each record found has its id, as text, under "id", and its fields (at
// fields_path) at the top. Only records whose fields equal the match are
// returned (connector.Matching): a search that ignores or loosens the
// filter does not make a false match. No error it returns holds a secret
// of the connection.
func (t *Target) Find(ctx context.Context, objectName string, match map[string]any) ([]map[string]any, error) {
	found, err := t.find(ctx, objectName, match)
	return found, t.redactor.RedactError(err)
}

func (t *Target) find(ctx context.Context, objectName string, match map[string]any) ([]map[string]any, error) {
	obj, ok := t.s.objects[objectName]
	if !ok {
		return nil, fmt.Errorf("http target: object %q is not configured", objectName)
	}
	if obj.lookup == nil {
		return nil, fmt.Errorf("http target: object %q has no lookup endpoint configured", objectName)
	}
	rq, err := obj.lookup.request(match)
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", objectName, err)
	}
	rq.obj = &obj
	resp, cerr, done := t.send(ctx, &call{}, rq)
	if !done {
		if ctx.Err() == nil {
			return nil, fmt.Errorf("looking up %s (%s): the call stopped", objectName, rq.where())
		}
		return nil, fmt.Errorf("looking up %s (%s): %w", objectName, rq.where(), context.Cause(ctx))
	}
	if cerr != nil {
		return nil, fmt.Errorf("looking up %s: %w", objectName, cerr)
	}
	found, err := obj.lookup.results(rq.where(), resp.body)
	if err != nil {
		return nil, err
	}
	return connector.Matching(objectName, found, match)
}

// request builds the lookup request for match.
func (l *lookup) request(match map[string]any) (request, error) {
	env := &lookupEnv{match: match, fields: slices.Sorted(maps.Keys(match))}
	rq := request{method: l.method, path: l.rawPath}
	if l.path != nil {
		p, err := env.text(l.path)
		if err != nil {
			return request{}, err
		}
		rq.path = p
	}
	switch {
	case l.legacy:
		rq.query = url.Values{}
		for field, v := range match {
			s, err := queryValue(v)
			if err != nil {
				return request{}, fmt.Errorf("by %s: %w", field, err)
			}
			rq.query.Set(field, s)
		}
	case l.query != nil:
		rq.query = url.Values{}
		for _, k := range l.queryOrder {
			s, err := env.text(l.query[k])
			if err != nil {
				return request{}, err
			}
			rq.query.Set(k, s)
		}
	}
	if l.body != nil {
		b, err := render(nil, l.body, env)
		if err != nil {
			return request{}, err
		}
		rq.body = b
	}
	return rq, nil
}

// results reads the records of a lookup answer.
func (l *lookup) results(where string, body []byte) ([]map[string]any, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, fmt.Errorf("%s: the response is not JSON: %w", where, err)
	}
	raw, ok := lookupPath(v, l.resultsPath)
	if !ok {
		return nil, fmt.Errorf("%s: the response has no list at %q (results_path)", where, l.resultsPath)
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: the value at %q (results_path) is not a list", where, l.resultsPath)
	}
	out := make([]map[string]any, 0, len(list))
	for i, item := range list {
		rec, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: result %d is not an object", where, i)
		}
		rawID, _ := lookupPath(rec, l.idPath)
		id, ok := idText(rawID)
		if !ok {
			return nil, fmt.Errorf("%s: result %d has no id at %q (lookup.id_path)", where, i, l.idPath)
		}
		found := maps.Clone(rec)
		if l.fieldsPath != "" {
			if fields, ok := lookupPath(rec, l.fieldsPath); ok {
				if m, ok := fields.(map[string]any); ok {
					for k, fv := range m {
						if _, taken := found[k]; !taken {
							found[k] = fv
						}
					}
				}
			}
		}
		found["id"] = id
		out = append(out, found)
	}
	return out, nil
}

// queryValue writes a match value as text (a query parameter, a path
// segment, a filter literal).
func queryValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	case nil:
		return "", fmt.Errorf("cannot match on null")
	default:
		return "", fmt.Errorf("cannot match on a %T value", v)
	}
}
