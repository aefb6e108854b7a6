package connector

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf16"
	"unicode/utf8"
)

// MinSecretLength is the shortest secret, in characters, that a Redactor
// redacts. Shorter values are ignored: replacing "abc" or "42" wherever it
// appears would mangle ids, field names and numbers in every message, and a
// credential that short protects nothing anyway. A username of three
// letters in basic auth, say, is left as it is.
const MinSecretLength = 4

// redacted is what a secret becomes: what Secret prints, too.
const redacted = "***"

// Redactor replaces secrets with *** in text that Ferry stores or prints
// (error messages above all: targets echo credentials back in their error
// bodies). It replaces each secret as it is and in the forms a target could
// echo it in: URL-escaped (query and path), JSON-escaped the way common
// encoders write strings, and base64 (standard and URL alphabets, with and
// without padding), and those forms JSON-escaped in turn (a base64 "/" that
// PHP writes as "\/"). A secret made of parts sent together (basic auth's
// "user:pass") must be added whole as well as part by part: the base64 of
// the whole does not contain the base64 of its parts. Secrets shorter than
// MinSecretLength are ignored.
//
// The replacements are built once per Add, so Redact is one pass over the
// text, and nothing but a nil check when there are no secrets. A nil
// *Redactor redacts nothing. A Redactor is safe for concurrent use, Add
// included.
type Redactor struct {
	mu       sync.Mutex          // serialises Add
	forms    map[string]struct{} // every form of every secret, guarded by mu
	replacer atomic.Pointer[strings.Replacer]
}

// NewRedactor returns a Redactor of secrets (raw values, as SecretHolder
// reports them).
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add adds secrets to redact. It must not be called on a nil Redactor.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	added := false
	for _, s := range secrets {
		if utf8.RuneCountInString(s) < MinSecretLength {
			continue
		}
		for _, f := range encodings(s) {
			if _, ok := r.forms[f]; ok {
				continue
			}
			if r.forms == nil {
				r.forms = make(map[string]struct{})
			}
			r.forms[f] = struct{}{}
			added = true
		}
	}
	if !added {
		return
	}
	// Where two forms match at the same place the replacer takes the one
	// given first, so the longest go first: "Bearer tok" must win over
	// "tok", or the text would keep "Bearer ".
	forms := make([]string, 0, len(r.forms))
	for f := range r.forms {
		forms = append(forms, f)
	}
	slices.SortFunc(forms, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	oldnew := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		oldnew = append(oldnew, f, redacted)
	}
	r.replacer.Store(strings.NewReplacer(oldnew...))
}

// Redact returns s with every form of every secret replaced by ***.
func (r *Redactor) Redact(s string) string {
	if r == nil || s == "" {
		return s
	}
	rep := r.replacer.Load()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// RedactError returns err with its text redacted. When the text holds no
// secret, err itself comes back, so that comparisons with == still hold. An
// *Error comes back as an *Error (see RedactClassified), so that its class
// and fields stay at hand; any other error is wrapped in one whose Error()
// is redacted and which unwraps to err, so that errors.Is and errors.As
// still work. Those reach the original error and its unredacted fields:
// code that takes one apart that way must not print it.
func (r *Redactor) RedactError(err error) error {
	out, _ := r.redactError(err)
	return out
}

// RedactClassified returns e with its Message, its Body and its underlying
// error's text redacted: e itself when none holds a secret, otherwise a copy.
func (r *Redactor) RedactClassified(e *Error) *Error {
	if e == nil || r.empty() {
		return e
	}
	msg, body := r.Redact(e.Message), r.Redact(e.Body)
	inner, changed := r.redactError(e.Err)
	if msg == e.Message && body == e.Body && !changed {
		return e
	}
	out := *e
	out.Message, out.Body, out.Err = msg, body, inner
	return &out
}

// redactError is RedactError, also saying whether anything was redacted
// (errors cannot be compared with == in general: some are not comparable).
func (r *Redactor) redactError(err error) (error, bool) {
	if err == nil || r.empty() {
		return err, false
	}
	if ce, ok := err.(*Error); ok && ce != nil {
		out := r.RedactClassified(ce)
		return out, out != ce
	}
	text := err.Error()
	clean := r.Redact(text)
	if clean == text {
		return err, false
	}
	return &redactedError{text: clean, err: err}, true
}

func (r *Redactor) empty() bool { return r == nil || r.replacer.Load() == nil }

// redactedError is an error whose text had secrets replaced.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// encodings returns s and the forms in which a target could echo it.
func encodings(s string) []string {
	b := []byte(s)
	plain := []string{
		s,
		url.QueryEscape(s),
		url.PathEscape(s),
		lowerPercent(url.QueryEscape(s)), // some encoders write %2f, not %2F
		lowerPercent(url.PathEscape(s)),
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
	}
	// A form echoed inside a JSON string is escaped in turn: "/" in a
	// base64 or a token, as PHP writes it, is "\/".
	var out []string
	for _, p := range plain {
		out = append(out, p, goJSON(p))
		for _, style := range jsonStyles {
			out = append(out, jsonEscape(p, style))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// lowerPercent writes the hex digits of %XX escapes in lower case.
func lowerPercent(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lowerHex(b[i+1]), lowerHex(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lowerHex(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// goJSON is s as Go's encoding/json writes it inside a string: <, > and &
// as \u003c and so on, like Rails; also U+2028 and U+2029.
func goJSON(s string) string {
	b, err := json.Marshal(s)
	if err != nil || len(b) < 2 {
		return s
	}
	return string(b[1 : len(b)-1])
}

// jsonStyle is how an encoder escapes a string beyond what JSON requires.
type jsonStyle struct {
	also     string // ASCII characters it writes as \u00XX
	slash    bool   // it writes / as \/
	nonASCII bool   // it writes non-ASCII characters as \uXXXX (UTF-16)
	upper    bool   // its hex digits are upper case
}

// jsonStyles are the ways common encoders write a string; Go's own is goJSON.
var jsonStyles = []jsonStyle{
	{},                            // the minimum: JavaScript, Jackson, Go without HTML escaping
	{nonASCII: true},              // Python's json.dumps
	{slash: true},                 // PHP with JSON_UNESCAPED_UNICODE
	{slash: true, nonASCII: true}, // PHP's json_encode
	{also: "\"'+<>&`", nonASCII: true, upper: true}, // .NET's System.Text.Json
}

// jsonEscape writes s as the body of a JSON string in style.
func jsonEscape(s string, style jsonStyle) string {
	hex := "0123456789abcdef"
	if style.upper {
		hex = "0123456789ABCDEF"
	}
	var sb strings.Builder
	u := func(c rune) {
		sb.WriteString(`\u`)
		for shift := 12; shift >= 0; shift -= 4 {
			sb.WriteByte(hex[(c>>shift)&0xF])
		}
	}
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			sb.WriteByte(s[i]) // not UTF-8: left as it is
		case c < utf8.RuneSelf && strings.ContainsRune(style.also, c):
			u(c)
		case c == '"' || c == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(c)
		case c == '/' && style.slash:
			sb.WriteString(`\/`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\r':
			sb.WriteString(`\r`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\b':
			sb.WriteString(`\b`)
		case c == '\f':
			sb.WriteString(`\f`)
		case c < 0x20:
			u(c)
		case c >= utf8.RuneSelf && style.nonASCII:
			if r1, r2 := utf16.EncodeRune(c); r1 != utf8.RuneError {
				u(r1)
				u(r2)
			} else {
				u(c)
			}
		default:
			sb.WriteRune(c)
		}
		i += size
	}
	return sb.String()
}
