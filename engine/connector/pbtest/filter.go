package pbtest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// A filter is PocketBase's expression language, the part a client looks
// records up with:
//
//	expr  := and ('||' and)*
//	and   := term ('&&' term)*
//	term  := '(' expr ')' | field op value
//	op    := '=' | '!=' | '~' | '!~'
//	value := 'text' | "text" | number | true | false | null
//
// Quoted text escapes its quote and backslashes with a backslash. '='
// compares exactly (text as text, numbers by value); '~' is "contains",
// without regard to case, as SQL LIKE '%…%' is.
type expr interface {
	eval(rec map[string]any) bool
}

type orExpr []expr
type andExpr []expr
type cmpExpr struct {
	field string
	op    string
	value any
}

func (e orExpr) eval(r map[string]any) bool {
	for _, x := range e {
		if x.eval(r) {
			return true
		}
	}
	return false
}

func (e andExpr) eval(r map[string]any) bool {
	for _, x := range e {
		if !x.eval(r) {
			return false
		}
	}
	return true
}

func (e cmpExpr) eval(r map[string]any) bool {
	got := r[e.field]
	switch e.op {
	case "=":
		return same(got, e.value)
	case "!=":
		return !same(got, e.value)
	case "~":
		return strings.Contains(strings.ToLower(text(got)), strings.ToLower(text(e.value)))
	case "!~":
		return !strings.Contains(strings.ToLower(text(got)), strings.ToLower(text(e.value)))
	}
	return false
}

func same(got, want any) bool {
	if want == nil {
		return got == nil || got == ""
	}
	if wn, ok := want.(json.Number); ok {
		gf, err1 := strconv.ParseFloat(text(got), 64)
		wf, err2 := wn.Float64()
		return err1 == nil && err2 == nil && gf == wf
	}
	return text(got) == text(want)
}

type parser struct {
	s   string
	pos int
}

func parseFilter(s string) (expr, error) {
	p := &parser{s: s}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.s) {
		return nil, fmt.Errorf("unexpected %q at %d", p.s[p.pos:], p.pos)
	}
	return e, nil
}

func (p *parser) space() {
	for p.pos < len(p.s) && strings.ContainsRune(" \t\r\n", rune(p.s[p.pos])) {
		p.pos++
	}
}

func (p *parser) eat(tok string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func (p *parser) or() (expr, error) {
	var out orExpr
	for {
		e, err := p.and()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if !p.eat("||") {
			break
		}
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}

func (p *parser) and() (expr, error) {
	var out andExpr
	for {
		e, err := p.term()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if !p.eat("&&") {
			break
		}
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}

func (p *parser) term() (expr, error) {
	if p.eat("(") {
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, fmt.Errorf("missing ) at %d", p.pos)
		}
		return e, nil
	}
	p.space()
	start := p.pos
	for p.pos < len(p.s) && (isIdent(p.s[p.pos])) {
		p.pos++
	}
	field := p.s[start:p.pos]
	if field == "" {
		return nil, fmt.Errorf("expected a field at %d", start)
	}
	var op string
	for _, o := range []string{"!=", "!~", "=", "~"} {
		if p.eat(o) {
			op = o
			break
		}
	}
	if op == "" {
		return nil, fmt.Errorf("expected an operator at %d", p.pos)
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	return cmpExpr{field: field, op: op, value: v}, nil
}

func isIdent(c byte) bool {
	return c == '_' || c == '.' || c == '@' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

func (p *parser) value() (any, error) {
	p.space()
	if p.pos >= len(p.s) {
		return nil, fmt.Errorf("expected a value at the end")
	}
	if q := p.s[p.pos]; q == '\'' || q == '"' {
		var sb strings.Builder
		for i := p.pos + 1; i < len(p.s); i++ {
			c := p.s[i]
			switch {
			case c == '\\' && i+1 < len(p.s):
				i++
				sb.WriteByte(p.s[i])
			case c == q:
				p.pos = i + 1
				return sb.String(), nil
			default:
				sb.WriteByte(c)
			}
		}
		return nil, fmt.Errorf("unterminated text at %d", p.pos)
	}
	start := p.pos
	for p.pos < len(p.s) && (isIdent(p.s[p.pos]) || p.s[p.pos] == '-') {
		p.pos++
	}
	word := p.s[start:p.pos]
	switch word {
	case "true", "false":
		return word, nil
	case "null", "":
		if word == "" {
			return nil, fmt.Errorf("expected a value at %d", start)
		}
		return nil, nil
	}
	if _, err := strconv.ParseFloat(word, 64); err == nil {
		return json.Number(word), nil
	}
	return nil, fmt.Errorf("unexpected %q at %d (text must be quoted)", word, start)
}
