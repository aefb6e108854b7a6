package templates

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/sqlident"
)

// Values are a template's parameters once checked: each a string, an
// int64 or a bool, by name.
type Values map[string]any

// ParamError is a parameter whose value is missing or wrong.
type ParamError struct {
	Param   string
	Message string
}

func (e *ParamError) Error() string { return fmt.Sprintf("parameter %s: %s", e.Param, e.Message) }

// Resolve checks the values given (as text, the way --set gives them)
// against the parameters' types and fills in the defaults. It reports
// every problem at once (errors.Join of *ParamError), each naming its
// parameter.
func (t *Template) Resolve(set map[string]string) (Values, error) {
	var errs []error
	for name := range set {
		if _, ok := t.Manifest.param(name); !ok {
			errs = append(errs, &ParamError{Param: name, Message: fmt.Sprintf("%s takes no such parameter (it takes: %s)", t.Manifest.Name, strings.Join(t.Manifest.paramNames(), ", "))})
		}
	}
	vals := Values{}
	for _, p := range t.Manifest.Parameters {
		text, given := set[p.Name]
		if !given {
			if p.Required() {
				errs = append(errs, &ParamError{Param: p.Name, Message: fmt.Sprintf("required (%s): set it with --set %s=…", p.Description, p.Name)})
				continue
			}
			text = defaultText(p.Default)
		}
		v, err := p.parse(text)
		if err != nil {
			errs = append(errs, &ParamError{Param: p.Name, Message: err.Error()})
			continue
		}
		vals[p.Name] = v
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(errs...)
	}
	return vals, nil
}

// ValuesText turns values of any JSON type (an API body's) into the text
// Resolve takes.
func ValuesText(in map[string]any) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = defaultText(v)
	}
	return out
}

// parse checks one value against the parameter's type and returns it as
// a string, an int64 or a bool.
func (p Param) parse(text string) (any, error) {
	switch p.Type {
	case TypeInteger:
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", text)
		}
		if p.Min != nil && n < *p.Min {
			return nil, fmt.Errorf("%d is less than %d", n, *p.Min)
		}
		if p.Max != nil && n > *p.Max {
			return nil, fmt.Errorf("%d is more than %d", n, *p.Max)
		}
		return n, nil
	case TypeBoolean:
		switch strings.ToLower(strings.TrimSpace(text)) {
		case "true", "yes", "on", "1":
			return true, nil
		case "false", "no", "off", "0":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not a boolean: use true or false", text)
	}
	if err := checkText(text); err != nil {
		return nil, err
	}
	switch p.Type {
	case TypeString:
	case TypeEnum:
		if !slices.Contains(p.Values, text) {
			return nil, fmt.Errorf("%q is not one of %s", text, strings.Join(p.Values, ", "))
		}
	case TypeDuration:
		d, err := time.ParseDuration(text)
		if err != nil || d < time.Second {
			return nil, fmt.Errorf("%q is not a duration of a second or more: write it like 90s, 5m or 1h", text)
		}
	case TypeConnection, TypeName:
		if !project.ValidName(text) {
			return nil, fmt.Errorf("%q is not a %s name: use lower-case letters, digits and _ (at most 63)", text, p.Type)
		}
	case TypeEnv:
		if !envPattern.MatchString(text) {
			return nil, fmt.Errorf("%q is not an environment variable's name: use upper-case letters, digits and _, like ERP_URL", text)
		}
	case TypeSchema, TypeColumn:
		if !identPattern.MatchString(text) {
			return nil, fmt.Errorf("%q is not a %s name: use letters, digits and _, starting with a letter or _", text, p.Type)
		}
	case TypeTable:
		schema, table, ok := strings.Cut(text, ".")
		if !ok || !sqlident.IsTable(text) || !identPattern.MatchString(schema) || !identPattern.MatchString(table) {
			return nil, fmt.Errorf("%q is not a table name: write schema.table, like crm.contacts", text)
		}
	}
	return text, nil
}

// checkText refuses text that could end a comment or a line it is written
// into: control characters (newlines) and NUL.
func checkText(s string) error {
	if len(s) > 1000 {
		return fmt.Errorf("longer than 1000 characters")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%q holds a control character (a newline, a tab …): a value is one line of text", s)
		}
	}
	return nil
}
