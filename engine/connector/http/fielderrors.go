package httptarget

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ferry-sync/ferry/engine/connector"
)

// fieldError is what an answer says about one field.
type fieldError struct {
	field, message, code string
}

func (f fieldError) String() string {
	s := f.message
	if f.field != "" {
		s = f.field + ": " + s
	}
	if f.code != "" {
		s += " (" + f.code + ")"
	}
	return s
}

// answer is what an error answer says: its message, and the fields' errors
// when the object says where they are.
type answer struct {
	status  int
	body    []byte
	message string // the fields' errors, else the target's message
	fields  []fieldError
}

// inspect reads an error answer with the field errors spec of obj (nil: the
// connection's).
func (t *Target) inspect(status int, body []byte, obj *object) answer {
	a := answer{status: status, body: body}
	spec := t.fieldSpec(obj)
	if spec != nil {
		if v, err := decodeJSON(body); err == nil {
			a.fields = fieldErrorsAt(v, spec)
		}
	}
	if len(a.fields) > 0 {
		parts := make([]string, len(a.fields))
		for i, f := range a.fields {
			parts[i] = f.String()
		}
		a.message = trim(t.redactor.Redact(strings.Join(parts, "; ")))
	} else {
		a.message = targetMessage(status, body, t.redactor)
	}
	return a
}

func (t *Target) fieldSpec(obj *object) *FieldErrors {
	if obj != nil {
		return obj.errors
	}
	return t.s.errors
}

// failure makes the classified error of an answer: its message says what
// the target said (the fields' errors when it lists them where the
// settings say), and Body keeps the answer itself, redacted and capped.
func (t *Target) failure(class connector.Class, status int, where string, body []byte, obj *object) *connector.Error {
	return t.failureOf(class, where, t.inspect(status, body, obj))
}

func (t *Target) failureOf(class connector.Class, where string, a answer) *connector.Error {
	e := t.newError(class, a.status, where+": "+a.message, nil)
	e.Body = t.capBody(a.body)
	return e
}

// capBody is an answer for Error.Body: redacted, then cut to
// connector.MaxErrorBody bytes on a rune boundary.
func (t *Target) capBody(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	s := t.redactor.Redact(string(body))
	if len(s) <= connector.MaxErrorBody {
		return s
	}
	cut := connector.MaxErrorBody
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// fieldErrorsAt reads the fields' errors at spec.Path of a decoded answer:
// an object keyed by field (nested objects for nested fields), or a list
// of entries naming their field at spec.Field.
func fieldErrorsAt(v any, spec *FieldErrors) []fieldError {
	at, ok := lookupPath(v, spec.Path)
	if !ok {
		return nil
	}
	msgKey, codeKey := spec.Message, spec.Code
	if msgKey == "" {
		msgKey = "message"
	}
	if codeKey == "" {
		codeKey = "code"
	}
	var out []fieldError
	var byField func(prefix string, m map[string]any)
	byField = func(prefix string, m map[string]any) {
		for _, k := range slices.Sorted(mapsKeys(m)) {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			switch e := m[k].(type) {
			case string:
				out = append(out, fieldError{field: name, message: e})
			case []any:
				var msgs []string
				for _, item := range e {
					if s := entryText(item, msgKey); s != "" {
						msgs = append(msgs, s)
					}
				}
				if len(msgs) > 0 {
					out = append(out, fieldError{field: name, message: strings.Join(msgs, ", ")})
				}
			case map[string]any:
				msg, hasMsg := lookupPath(e, msgKey)
				if s, ok := msg.(string); hasMsg && ok {
					out = append(out, fieldError{field: name, message: s, code: textOf(e, codeKey)})
					continue
				}
				byField(name, e)
			}
		}
	}
	switch x := at.(type) {
	case map[string]any:
		byField("", x)
	case []any:
		for _, item := range x {
			switch e := item.(type) {
			case string:
				out = append(out, fieldError{message: e})
			case map[string]any:
				msg := textOf(e, msgKey)
				code := textOf(e, codeKey)
				if msg == "" && code == "" {
					continue
				}
				if msg == "" {
					msg, code = code, ""
				}
				fe := fieldError{message: msg, code: code}
				if spec.Field != "" {
					fe.field = textOf(e, spec.Field)
				}
				out = append(out, fe)
			}
		}
	}
	return out
}

// entryText is a list entry's text: a string, or an object's message.
func entryText(item any, msgKey string) string {
	switch e := item.(type) {
	case string:
		return e
	case map[string]any:
		return textOf(e, msgKey)
	}
	return ""
}

// textOf is the text at path in v: a string, a number, or the first of a
// list of them ("context.propertyName" is ["email"] in HubSpot's errors).
func textOf(v any, path string) string {
	raw, ok := lookupPath(v, path)
	if !ok {
		return ""
	}
	if list, ok := raw.([]any); ok {
		var parts []string
		for _, item := range list {
			if s := scalarString(item); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ", ")
	}
	return scalarString(raw)
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case map[string]any, []any:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// matches reports whether an answer is one the rule describes.
func (r *answerRule) matches(a answer) bool {
	if r == nil {
		return false
	}
	if len(r.status) > 0 && !slices.Contains(r.status, a.status) {
		return false
	}
	if r.contains != "" &&
		!strings.Contains(strings.ToLower(a.message), r.contains) &&
		!strings.Contains(strings.ToLower(string(a.body)), r.contains) {
		return false
	}
	if r.field != "" || r.code != "" {
		for _, f := range a.fields {
			if (r.field == "" || f.field == r.field) && (r.code == "" || f.code == r.code) {
				return true
			}
		}
		return false
	}
	return true
}
