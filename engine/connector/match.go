package connector

import (
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"
)

// LookupMismatchError says that a lookup's answer held records, but none
// whose fields equal what was asked: the target ignored or misread the
// filter (many search endpoints ignore parameters they do not know and
// answer with the first page of everything). Trusting such an answer
// links every record to one target record.
type LookupMismatchError struct {
	Object   string
	Match    map[string]any
	Returned int
	Example  string // what the first record returned holds for the match fields
}

func (e *LookupMismatchError) Error() string {
	return fmt.Sprintf("looking up %s by %s: the target answered %d records and none has those values (the first has %s): the lookup endpoint ignores or misreads the filter; fix the object's lookup settings",
		e.Object, describeMatch(e.Match), e.Returned, e.Example)
}

// Matching keeps the records whose fields equal match: a record returned
// by a lookup is a match only if its fields match, whatever the target's
// search did. Values compare as a person would: strings without
// surrounding space and case, numbers by value (also when the target
// writes them as strings), times by instant. A record without a match field
// is not a match. When records came back but none matches, the error is a
// *LookupMismatchError.
func Matching(object string, found []map[string]any, match map[string]any) ([]map[string]any, error) {
	var kept []map[string]any
	for _, rec := range found {
		if recordMatches(rec, match) {
			kept = append(kept, rec)
		}
	}
	if len(kept) == 0 && len(found) > 0 {
		example := map[string]any{}
		for k := range match {
			v, ok := lookupField(found[0], k)
			if !ok {
				v = "(missing)"
			}
			example[k] = v
		}
		return nil, &LookupMismatchError{Object: object, Match: match, Returned: len(found), Example: describeMatch(example)}
	}
	return kept, nil
}

func recordMatches(rec, match map[string]any) bool {
	for k, want := range match {
		got, ok := lookupField(rec, k)
		if !ok || !SameValue(got, want) {
			return false
		}
	}
	return true
}

// lookupField finds field k in a record: at the top, or under a dotted
// path ("properties.email").
func lookupField(rec map[string]any, k string) (any, bool) {
	if v, ok := rec[k]; ok {
		return v, true
	}
	var cur any = rec
	for _, seg := range strings.Split(k, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// SameValue reports whether a value a target returned equals the value a
// record was looked up by (see Matching).
func SameValue(got, want any) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	if isNumber(got) || isNumber(want) {
		if gn, ok := number(got); ok {
			if wn, ok := number(want); ok {
				return gn.Cmp(wn) == 0
			}
		}
	}
	if gt, ok := instant(got); ok {
		if wt, ok := instant(want); ok {
			return gt.Equal(wt)
		}
	}
	gs, gok := scalarText(got)
	ws, wok := scalarText(want)
	if gok && wok {
		return strings.EqualFold(strings.TrimSpace(gs), strings.TrimSpace(ws))
	}
	gj, err1 := json.Marshal(got)
	wj, err2 := json.Marshal(want)
	return err1 == nil && err2 == nil && string(gj) == string(wj)
}

func isNumber(v any) bool {
	switch v.(type) {
	case json.Number, int64, int, int32, float64:
		return true
	}
	return false
}

// number reads a numeric value, or a string holding one: it is asked only
// when the other side is a number ("007" and "7" are different strings).
func number(v any) (*big.Rat, bool) {
	r := new(big.Rat)
	switch x := v.(type) {
	case json.Number:
		_, ok := r.SetString(string(x))
		return r, ok
	case int64:
		return r.SetInt64(x), true
	case int:
		return r.SetInt64(int64(x)), true
	case int32:
		return r.SetInt64(int64(x)), true
	case float64:
		if r.SetFloat64(x) == nil {
			return nil, false
		}
		return r, true
	case string:
		_, ok := r.SetString(strings.TrimSpace(x))
		return r, ok && strings.TrimSpace(x) != ""
	}
	return nil, false
}

func instant(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, true
	case string:
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(x))
		return t, err == nil
	}
	return time.Time{}, false
}

func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return fmt.Sprint(x), true
	case json.Number:
		return string(x), true
	case int64, int, int32, float64:
		return fmt.Sprint(x), true
	}
	return "", false
}

// describeMatch writes match fields as "email=a@b.c, vat=BE01" in key order.
func describeMatch(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, m[k])
	}
	return strings.Join(parts, ", ")
}
