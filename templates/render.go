package templates

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"go.starlark.net/starlark"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/sqlident"
)

// A placeholder is {{name}}, or {{name.part}}: part is schema or table (the
// halves of a table parameter, each an identifier) or sql (the value as
// SQL, written as a string of the file's language: a script's query).
//
// A placeholder always stands for one whole value, written the way the
// file's language needs it, so no value is ever pasted in as raw text:
//
//	.sql   a table is "schema"."table", a schema, column or name a quoted
//	       identifier (link_tables."contacts"), an integer its digits, a
//	       boolean TRUE or FALSE, any other value a quoted literal ('it''s')
//	.yaml  a JSON scalar: "text", 42, true (a name or duration unquoted:
//	       erp, crm.contacts, 1h)
//	.star  a Starlark literal: "text", 42, True
//
// Names are composed with a table parameter ({{report.schema}}), never by
// gluing text to a placeholder.
var placeholderPattern = regexp.MustCompile(`^\{\{\s*([a-z_][a-z0-9_]*)(?:\.(schema|table|sql))?\s*\}\}`)

const partSQL = "sql"

type placeholder struct {
	start, end int // byte offsets of {{ … }}
	line       int
	name, part string
	text       string // what stood between the braces
}

// placeholders finds every {{…}} of a file; a {{ that is not a well-formed
// placeholder is an error with its line.
func placeholders(b []byte) ([]placeholder, error) {
	var out []placeholder
	for i := 0; i < len(b); {
		j := bytes.Index(b[i:], []byte("{{"))
		if j < 0 {
			break
		}
		start := i + j
		line := 1 + bytes.Count(b[:start], []byte("\n"))
		m := placeholderPattern.FindSubmatchIndex(b[start:])
		if m == nil {
			end := bytes.Index(b[start:], []byte("}}"))
			shown := string(b[start:min(len(b), start+40)])
			if end >= 0 && end < 80 {
				shown = string(b[start : start+end+2])
			}
			return nil, fmt.Errorf("line %d: %s is not a placeholder: write {{name}}, {{name.schema}}, {{name.table}} or {{name.sql}}", line, shown)
		}
		p := placeholder{start: start, end: start + m[1], line: line, name: string(b[start+m[2] : start+m[3]])}
		if m[4] >= 0 {
			p.part = string(b[start+m[4] : start+m[5]])
		}
		p.text = strings.TrimSpace(string(b[start+2 : p.end-2]))
		out = append(out, p)
		i = p.end
	}
	return out, nil
}

// language is how values are written into a file.
type language int

const (
	langSQL language = iota
	langYAML
	langStar
	langText // messages shown to people: the value as it is
)

func languageOf(p string) language {
	switch path.Ext(p) {
	case ".sql":
		return langSQL
	case ".star":
		return langStar
	case ".yaml", ".yml":
		return langYAML
	}
	return langText
}

// render replaces the placeholders of b with values written for lang.
func (t *Template) render(b []byte, lang language, vals Values) ([]byte, error) {
	refs, err := placeholders(b)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	last := 0
	for _, r := range refs {
		p, ok := t.Manifest.param(r.name)
		if !ok {
			return nil, fmt.Errorf("line %d: {{%s}} names no parameter", r.line, r.text)
		}
		v, ok := vals[r.name]
		if !ok {
			return nil, fmt.Errorf("line %d: parameter %s has no value", r.line, r.name)
		}
		text, err := encode(p, v, r.part, lang)
		if err != nil {
			return nil, fmt.Errorf("line %d: {{%s}}: %w", r.line, r.text, err)
		}
		out.Write(b[last:r.start])
		out.WriteString(text)
		last = r.end
	}
	out.Write(b[last:])
	return out.Bytes(), nil
}

// encode writes one value for a language.
func encode(p Param, v any, part string, lang language) (string, error) {
	if part == "schema" || part == "table" {
		schema, table, _ := strings.Cut(v.(string), ".")
		v = schema
		if part == "table" {
			v = table
		}
		// Each half is an identifier in SQL, a string elsewhere.
		p = Param{Name: p.Name, Type: TypeColumn}
	}
	if part == partSQL && lang != langSQL {
		sql, err := encode(p, v, "", langSQL)
		if err != nil {
			return "", err
		}
		p, v = Param{Name: p.Name, Type: TypeString}, sql
	}
	switch lang {
	case langSQL:
		switch x := v.(type) {
		case int64:
			return strconv.FormatInt(x, 10), nil
		case bool:
			if x {
				return "TRUE", nil
			}
			return "FALSE", nil
		case string:
			switch p.Type {
			case TypeTable:
				return sqlident.Qualified(x), nil
			case TypeSchema, TypeColumn, TypeName, TypeConnection:
				// A sync's name names its link table: link_tables."contacts".
				return sqlident.Ident(x), nil
			}
			return sqlident.Literal(x), nil
		}
	case langYAML:
		if s, ok := v.(string); ok && yamlPlain(p.Type, s) {
			return s, nil
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSuffix(buf.String(), "\n"), nil
	case langStar:
		switch x := v.(type) {
		case int64:
			return strconv.FormatInt(x, 10), nil
		case bool:
			if x {
				return "True", nil
			}
			return "False", nil
		case string:
			return starlark.String(x).String(), nil
		}
	case langText:
		return fmt.Sprint(v), nil
	}
	return "", fmt.Errorf("a %T cannot be written here", v)
}

// plainYAML is text YAML reads as a string without quotes, in YAML 1.1
// (which sigs.k8s.io/yaml follows: yes and on are booleans there) as in
// 1.2.
var plainYAML = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]*$`)

// yamlPlain reports whether a value may be written unquoted: a name or a
// duration ("1h" is no number), never a word YAML reads as something else.
func yamlPlain(t ParamType, s string) bool {
	if t == TypeDuration {
		return true
	}
	switch strings.ToLower(s) {
	case "y", "yes", "n", "no", "true", "false", "on", "off", "null":
		return false
	}
	return plainYAML.MatchString(s)
}

// Rendered is a template rendered with its values: the files it writes
// into a project, each with its header, and its ferry.yaml entries.
type Rendered struct {
	Template string
	Version  int
	Values   Values
	// Files are the project files it writes, by path, each starting with
	// its header line (ferry.yaml aside).
	Files map[string][]byte
	// ProjectYAML is its ferry.yaml: entries merged into the project's.
	ProjectYAML []byte
	// Next are the commands to run next.
	Next []string
}

// Render renders the template's project files with values from Resolve.
func (t *Template) Render(vals Values) (*Rendered, error) {
	r := &Rendered{Template: t.Manifest.Name, Version: t.Manifest.Version, Values: vals, Files: map[string][]byte{}}
	for _, file := range sortedPaths(t.Files) {
		rel, ok := strings.CutPrefix(file, ProjectDir+"/")
		if !ok {
			continue
		}
		lang := languageOf(rel)
		body, err := t.render(t.Files[file], lang, vals)
		if err != nil {
			return nil, &Error{Template: t.Manifest.Name, File: file, Message: err.Error()}
		}
		if rel == project.ProjectFile {
			if err := checkProjectYAML(body); err != nil {
				return nil, &Error{Template: t.Manifest.Name, File: file, Message: err.Error()}
			}
			r.ProjectYAML = body
			continue
		}
		header, err := Header{Template: r.Template, Version: r.Version, Values: vals, Hash: hashBody(body)}.line(lang)
		if err != nil {
			return nil, err
		}
		r.Files[rel] = append([]byte(header+"\n"), body...)
	}
	next, err := t.render([]byte(t.Manifest.Next), langText, vals)
	if err != nil {
		return nil, &Error{Template: t.Manifest.Name, File: ManifestFile, Field: "next", Message: err.Error()}
	}
	for _, line := range strings.Split(strings.TrimRight(string(next), "\n"), "\n") {
		if strings.TrimSpace(line) != "" {
			r.Next = append(r.Next, line)
		}
	}
	return r, nil
}

// Header is the first line of every file a template writes: which
// template, which version, with which values, and the hash of the rest of
// the file as it was written (so diff can tell whether it was edited).
//
//	# from template contacts_people v1 with {"source_table":"crm.contacts"} (sha256 1f2e3d4c5b6a7988)
type Header struct {
	Template string
	Version  int
	Values   Values
	Hash     string
}

var headerPattern = regexp.MustCompile(`^(?:#|--) from template ([a-z_][a-z0-9_]*) v(\d+) with (\{.*\}) \(sha256 ([0-9a-f]{16})\)\r?$`)

func (h Header) line(lang language) (string, error) {
	vals, err := json.Marshal(h.Values)
	if err != nil {
		return "", fmt.Errorf("writing the values of template %s: %w", h.Template, err)
	}
	prefix := "#"
	if lang == langSQL {
		prefix = "--"
	}
	return fmt.Sprintf("%s from template %s v%d with %s (sha256 %s)", prefix, h.Template, h.Version, vals, h.Hash), nil
}

// ParseHeader reads the header of a file a template wrote, and returns it
// and the rest of the file; ok is false for a file with no header.
func ParseHeader(b []byte) (h Header, body []byte, ok bool) {
	first, rest, _ := bytes.Cut(b, []byte("\n"))
	m := headerPattern.FindSubmatch(first)
	if m == nil {
		return Header{}, nil, false
	}
	v, err := strconv.Atoi(string(m[2]))
	if err != nil {
		return Header{}, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(m[3]))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return Header{}, nil, false
	}
	return Header{Template: string(m[1]), Version: v, Values: raw, Hash: string(m[4])}, rest, true
}

// hashBody is the short hash headers record.
func hashBody(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
