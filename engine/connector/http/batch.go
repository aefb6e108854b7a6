package httptarget

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"text/template"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/internal/jsonx"
)

// Batch modes.
const (
	allOrNothing = "all_or_nothing"
	partial      = "partial"
)

// batch is a Batch resolved.
type batch struct {
	size        int
	mode        string
	insert      *batchEndpoint
	update      *batchEndpoint
	resultsPath string
	idPath      string
	failures    *BatchFailures
	notFound    *answerRule
}

func (b *batch) endpoint(op connector.Op) *batchEndpoint {
	switch op {
	case connector.OpInsert:
		return b.insert
	case connector.OpUpdate:
		return b.update
	}
	return nil
}

// batchEndpoint is a BatchEndpoint resolved.
type batchEndpoint struct {
	op        connector.Op
	method    string
	path      string
	body      *jnode
	item      *jnode
	correlate *Correlate
	byID      bool // results and failures name their record by its target id
	b         *batch
}

func (ep *batchEndpoint) where() string { return ep.method + " " + ep.path }

func resolveBatch(path string, in Batch, obj object) (*batch, error) {
	b := &batch{size: in.Size, mode: in.Mode, resultsPath: in.ResultsPath, idPath: in.IDPath, failures: in.Failures}
	if b.size == 0 {
		b.size = DefaultBatchSize
	}
	if b.size < 0 {
		return nil, problem(path+".size", "%d must be positive", in.Size)
	}
	switch b.mode {
	case "":
		b.mode = allOrNothing
	case allOrNothing, partial:
	default:
		return nil, problem(path+".mode", "%q: use all_or_nothing (the API writes none of a batch with a bad record) or partial (it writes the good ones and lists the others)", in.Mode)
	}
	if in.Insert == nil && in.Update == nil {
		return nil, problem(path, "say which writes are batched: insert, update or both")
	}
	if b.resultsPath == "" {
		b.resultsPath = DefaultResultsPath
	}
	if b.idPath == "" {
		b.idPath = obj.idPath
	}
	if f := b.failures; f != nil && f.Path == "" {
		return nil, problem(path+".failures.path", "is required: where the answer names the records that failed")
	}
	if f := b.failures; f != nil && f.NotFound != nil {
		var err error
		if b.notFound, err = resolveAnswer(path+".failures.not_found", f.NotFound); err != nil {
			return nil, err
		}
	}
	if b.mode == partial && b.failures == nil {
		return nil, problem(path+".failures", "is required in partial mode: where the answer lists the records that failed")
	}
	var err error
	if in.Insert != nil {
		if b.insert, err = resolveBatchEndpoint(path+".insert", *in.Insert, connector.OpInsert, b, obj); err != nil {
			return nil, err
		}
	}
	if in.Update != nil {
		if b.update, err = resolveBatchEndpoint(path+".update", *in.Update, connector.OpUpdate, b, obj); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func resolveBatchEndpoint(path string, in BatchEndpoint, op connector.Op, b *batch, obj object) (*batchEndpoint, error) {
	ep := &batchEndpoint{op: op, method: strings.ToUpper(in.Method), path: in.Path, correlate: in.Correlate, b: b}
	if ep.method == "" {
		ep.method = http.MethodPost
	}
	if err := checkEndpoint(Endpoint{Method: ep.method, Path: ep.path}); err != nil {
		return nil, problem(path, "%v", err)
	}
	body := in.Body
	if body == nil {
		body = "{{items}}"
	}
	var err error
	if body, err = decodeTemplate(body); err != nil {
		return nil, problem(path+".body", "%v", err)
	}
	if ep.body, err = compileJSON(body, batchBodyNames, path+".body"); err != nil {
		return nil, err
	}
	if !ep.body.uses("items") {
		return nil, problem(path+".body", "must hold \"{{items}}\" where the records go")
	}
	item := in.Item
	if item == nil {
		switch {
		case op == connector.OpInsert && obj.bodyKey == "":
			item = "{{record}}"
		case op == connector.OpInsert:
			item = map[string]any{obj.bodyKey: "{{record}}"}
		case obj.bodyKey != "":
			item = map[string]any{"id": "{{id}}", obj.bodyKey: "{{record}}"}
		default:
			return nil, problem(path+".item", "is required for updates: where the record's id and fields go, like {id: \"{{id}}\", fields: \"{{record}}\"}")
		}
	}
	if item, err = decodeTemplate(item); err != nil {
		return nil, problem(path+".item", "%v", err)
	}
	if ep.item, err = compileJSON(item, batchItemNames, path+".item"); err != nil {
		return nil, err
	}
	if !ep.item.uses("record") {
		return nil, problem(path+".item", "must hold \"{{record}}\" where the record's fields go")
	}
	if op == connector.OpUpdate && !ep.item.uses("id") {
		return nil, problem(path+".item", "must hold \"{{id}}\": an update names the record it changes")
	}
	ep.byID = op == connector.OpUpdate && !ep.item.uses("correlation_id")
	if c := ep.correlate; c != nil {
		if c.Result == "" {
			return nil, problem(path+".correlate.result", "is required: where each result carries its record's correlation id")
		}
		if !ep.byID && !ep.item.uses("correlation_id") {
			return nil, problem(path+".item", "must hold \"{{correlation_id}}\" for correlate to find it in the answer")
		}
	}
	if b.mode == partial {
		if ep.correlate == nil && op == connector.OpInsert {
			return nil, problem(path+".correlate", "is required in partial mode: results must say which record they are")
		}
		if (ep.correlate == nil || ep.correlate.Failure == "") && b.failures.Index == "" {
			return nil, problem(path+".correlate.failure", "is required in partial mode (or failures.index): failures must say which record they are")
		}
	}
	return ep, nil
}

// batchItem is one change of a batch.
type batchItem struct {
	i        int // its index in the call's changes
	ch       *connector.Change
	record   []byte // its fields, as JSON
	clientID string // the id chosen for it, for an object with client_id
	corr     string // its correlation id
}

// batchEnv renders a batch request.
type batchEnv struct {
	ep    *batchEndpoint
	items []batchItem
	cur   *batchItem
}

func (e *batchEnv) typed(dst []byte, name, _ string) ([]byte, error) {
	switch name {
	case "items":
		dst = append(dst, '[')
		for k := range e.items {
			if k > 0 {
				dst = append(dst, ',')
			}
			e.cur = &e.items[k]
			var err error
			if dst, err = render(dst, e.ep.item, e); err != nil {
				return dst, err
			}
		}
		e.cur = nil
		return append(dst, ']'), nil
	case "record":
		return append(dst, e.cur.record...), nil
	case "id":
		return jsonx.AppendString(dst, e.cur.ch.TargetID), nil
	case "correlation_id":
		return jsonx.AppendString(dst, e.cur.corr), nil
	}
	return dst, fmt.Errorf("{{%s}} is not known in a batch", name)
}

func (e *batchEnv) text(st *stext) (string, error) {
	if e.cur == nil {
		return "", fmt.Errorf("{{…}} in a batch's body outside its items")
	}
	if st.tmpl == nil {
		var sb strings.Builder
		for _, p := range st.parts {
			switch p.name {
			case "":
				sb.WriteString(p.lit)
			case "id":
				// In a string (a URL in the body), the id is a path segment.
				sb.WriteString(url.PathEscape(e.cur.ch.TargetID))
			case "correlation_id":
				sb.WriteString(e.cur.corr)
			default:
				return "", fmt.Errorf("{{%s}} is not known in a batch item's text", p.name)
			}
		}
		return sb.String(), nil
	}
	cur := e.cur
	return st.execute(template.FuncMap{
		"id":             func() string { return url.PathEscape(cur.ch.TargetID) },
		"correlation_id": func() string { return cur.corr },
	})
}

func (e *batchEnv) each(dst []byte, _ *jnode) ([]byte, error) { return dst, nil }

// writeBatch writes the changes at idx with one batch request (more when
// some fail), recording each one's result.
func (t *Target) writeBatch(ctx context.Context, c *call, obj object, ep *batchEndpoint, changes []connector.Change, idx []int, results []connector.Result) {
	items := make([]batchItem, 0, len(idx))
	for _, i := range idx {
		ch := &changes[i]
		it := batchItem{i: i, ch: ch, corr: strconv.Itoa(i)}
		payload := ch.Payload
		if ep.op == connector.OpInsert && obj.clientID != nil {
			payload, it.clientID = t.withClientID(ctx, obj, *ch)
		}
		if ep.op == connector.OpUpdate && ch.TargetID == "" {
			results[i] = t.rejected(ep.where(), "an update needs a target id")
			continue
		}
		if ep.byID {
			it.corr = ch.TargetID
		}
		rec, err := encodeBody("", payload)
		if err != nil {
			results[i] = t.rejected(ep.where(), "encoding the payload as JSON: "+err.Error())
			continue
		}
		it.record = rec
		items = append(items, it)
	}
	if len(items) > 0 {
		t.runBatch(ctx, c, obj, ep, items, results)
	}
}

// runBatch sends one batch request and records what became of its items;
// bad records are found by the answer naming them or by splitting.
func (t *Target) runBatch(ctx context.Context, c *call, obj object, ep *batchEndpoint, items []batchItem, results []connector.Result) {
	if c.Stopped() || ctx.Err() != nil {
		return
	}
	env := &batchEnv{ep: ep, items: items}
	body, err := render(make([]byte, 0, 256*len(items)), ep.body, env)
	if err != nil {
		for _, it := range items {
			results[it.i] = t.rejected(ep.where(), "building the batch: "+err.Error())
		}
		return
	}
	var timedOut atomic.Bool
	rq := request{
		method: ep.method, path: ep.path, body: body, write: true,
		insert:   ep.op == connector.OpInsert,
		safe:     ep.op == connector.OpUpdate || obj.idempotentInserts(),
		obj:      &obj,
		timedOut: &timedOut,
	}
	if ep.op == connector.OpInsert && obj.idemKey != "" {
		rq.header = http.Header{obj.idemKey: {batchKey(ctx, obj, items)}}
	}
	resp, cerr, done := t.send(ctx, c, rq)
	if timedOut.Load() {
		t.shrinkBatch(obj.name, len(items))
	}
	if !done {
		return
	}
	if cerr == nil {
		t.batchAnswer(ctx, c, obj, ep, items, resp, results)
		return
	}
	switch cerr.Class {
	case connector.Rejected, connector.NotFound:
	default:
		// Auth, unreachable, rate limited, retried and still failing, or a
		// lost answer (Ambiguous): the batch as a whole, each of its records.
		for _, it := range items {
			e := cerr
			if cerr.Class == connector.Ambiguous {
				e = t.newError(connector.Ambiguous, cerr.Status, fmt.Sprintf(
					"%s (a batch of %d records whose answer was lost: each may or may not have been written)", cerr.Message, len(items)), cerr.Err)
				e.Body = cerr.Body
			}
			results[it.i] = connector.Result{Done: true, TargetID: it.ch.TargetID, Err: e}
		}
		return
	}
	// The API refused the batch. All or nothing: nothing was written, and
	// the answer may name the bad records.
	if ep.b.mode == allOrNothing && ep.b.failures != nil {
		if named, ok := t.failedEntries(obj, ep, resp.status, resp.body, items); ok && len(named) > 0 {
			var rest []batchItem
			for k, it := range items {
				a, bad := named[k]
				if !bad {
					rest = append(rest, it)
					continue
				}
				results[it.i] = t.itemFailure(obj, ep, it, a)
			}
			if len(rest) > 0 {
				t.runBatch(ctx, c, obj, ep, rest, results)
			}
			return
		}
	}
	if len(items) == 1 {
		it := items[0]
		a := t.inspect(resp.status, resp.body, &obj)
		results[it.i] = t.itemFailure(obj, ep, it, a)
		return
	}
	// Split in halves down to the bad records.
	half := (len(items) + 1) / 2
	t.runBatch(ctx, c, obj, ep, items[:half], results)
	t.runBatch(ctx, c, obj, ep, items[half:], results)
}

// itemFailure is the result of an item the API refused with answer a.
func (t *Target) itemFailure(obj object, ep *batchEndpoint, it batchItem, a answer) connector.Result {
	if it.clientID != "" && obj.clientID.exists.matches(a) {
		return connector.Result{Done: true, TargetID: it.clientID}
	}
	class := connector.Rejected
	switch {
	case ep.op == connector.OpUpdate && (a.status == http.StatusNotFound || ep.b.notFound.matches(a)):
		class = connector.NotFound
	case a.status == http.StatusTooManyRequests:
		class = connector.RateLimited
	case a.status >= 500:
		class = connector.Retryable
	}
	return connector.Result{Done: true, TargetID: it.ch.TargetID, Err: t.failureOf(class, ep.where(), a)}
}

// batchAnswer records a 2xx answer: results by correlation id or by
// position, and, in partial mode, the failures it lists.
func (t *Target) batchAnswer(ctx context.Context, c *call, obj object, ep *batchEndpoint, items []batchItem, resp response, results []connector.Result) {
	b := ep.b
	settled := make([]bool, len(items))
	if b.mode == partial {
		named, _ := t.failedEntries(obj, ep, http.StatusBadRequest, resp.body, items)
		for k, a := range named {
			results[items[k].i] = t.itemFailure(obj, ep, items[k], a)
			settled[k] = true
		}
	}
	var list []any
	v, err := decodeJSON(resp.body)
	if err == nil {
		if raw, ok := lookupPath(v, b.resultsPath); ok {
			list, _ = raw.([]any)
		}
	}
	succeed := func(k int, result any) {
		it := items[k]
		settled[k] = true
		if ep.op == connector.OpUpdate {
			results[it.i] = connector.Result{Done: true, TargetID: it.ch.TargetID}
			return
		}
		raw, _ := lookupPath(result, b.idPath)
		id, ok := idText(raw)
		switch {
		case ok:
			results[it.i] = connector.Result{Done: true, TargetID: id}
		case it.clientID != "":
			results[it.i] = connector.Result{Done: true, TargetID: it.clientID}
		default:
			results[it.i] = connector.Result{Done: true, Err: t.newError(connector.Ambiguous, resp.status, fmt.Sprintf(
				"%s: the batch was accepted, but its result for this record has no id at %q (batch.id_path): %s",
				ep.where(), b.idPath, excerpt(mustJSON(result), t.redactor)), nil)}
		}
	}
	switch {
	case ep.correlate != nil || ep.byID:
		at := map[string]int{}
		for k, it := range items {
			at[it.corr] = k
		}
		resultPath := b.idPath
		if ep.correlate != nil {
			resultPath = ep.correlate.Result
		}
		for _, r := range list {
			if k, ok := at[textOf(r, resultPath)]; ok && !settled[k] {
				succeed(k, r)
			}
		}
	case len(list) == len(items):
		for k, r := range list {
			succeed(k, r)
		}
	case ep.op == connector.OpUpdate && b.mode == allOrNothing:
		for k := range items {
			succeed(k, nil)
		}
	}
	for k, it := range items {
		if settled[k] {
			continue
		}
		// The answer says nothing of this record.
		switch {
		case ep.op == connector.OpUpdate && b.mode == allOrNothing:
			results[it.i] = connector.Result{Done: true, TargetID: it.ch.TargetID}
		case ep.op == connector.OpUpdate:
			results[it.i] = connector.Result{Done: true, TargetID: it.ch.TargetID, Err: t.newError(connector.Retryable, resp.status,
				ep.where()+": the batch answer does not say whether this record was updated", nil)}
		case it.clientID != "" && b.mode == allOrNothing:
			results[it.i] = connector.Result{Done: true, TargetID: it.clientID}
		default:
			results[it.i] = connector.Result{Done: true, Err: t.newError(connector.Ambiguous, resp.status, fmt.Sprintf(
				"%s: the batch answer (%d results for %d records) does not say what became of this record: it may have been created",
				ep.where(), len(list), len(items)), nil)}
		}
	}
}

// failedEntries reads the records an answer names as failed, by their
// position in items, each with its own answer. ok is false when the answer
// names records that are not in the batch (it is then not trusted).
func (t *Target) failedEntries(obj object, ep *batchEndpoint, status int, body []byte, items []batchItem) (map[int]answer, bool) {
	f := ep.b.failures
	if f == nil {
		return nil, true
	}
	v, err := decodeJSON(body)
	if err != nil {
		return nil, false
	}
	at, found := lookupPath(v, f.Path)
	if !found {
		return nil, true
	}
	byCorr := map[string]int{}
	for k, it := range items {
		byCorr[it.corr] = k
	}
	out := map[int]answer{}
	add := func(key string, entry any) bool {
		k := -1
		switch {
		case ep.correlate != nil && ep.correlate.Failure != "":
			if pos, ok := byCorr[textOf(entry, ep.correlate.Failure)]; ok {
				k = pos
			}
		case ep.byID && f.Index == "" && key == "":
			if pos, ok := byCorr[textOf(entry, "id")]; ok {
				k = pos
			}
		case f.Index != "":
			if n, err := strconv.Atoi(textOf(entry, f.Index)); err == nil {
				k = n
			}
		default:
			if n, err := strconv.Atoi(key); err == nil {
				k = n
			}
		}
		if k < 0 || k >= len(items) {
			return false
		}
		out[k] = t.entryAnswer(obj, entry, status)
		return true
	}
	switch x := at.(type) {
	case map[string]any:
		for key, entry := range x {
			if !add(key, entry) {
				return nil, false
			}
		}
	case []any:
		for _, entry := range x {
			if !add("", entry) {
				return nil, false
			}
		}
	default:
		return nil, false
	}
	return out, true
}

// entryAnswer reads one failed record's answer out of a batch answer.
func (t *Target) entryAnswer(obj object, entry any, status int) answer {
	f := objFailures(obj)
	body := entry
	if f.Body != "" {
		if b, ok := lookupPath(entry, f.Body); ok {
			body = b
		}
	}
	st := 0
	if f.Status != "" {
		st, _ = strconv.Atoi(textOf(entry, f.Status))
	}
	if st == 0 {
		for _, k := range []string{"status", "code", "statusCode"} {
			if n, err := strconv.Atoi(textOf(body, k)); err == nil && n >= 100 && n <= 599 {
				st = n
				break
			}
		}
	}
	if st == 0 {
		st = status
	}
	return t.inspect(st, mustJSON(body), &obj)
}

func objFailures(obj object) *BatchFailures {
	if obj.batch != nil && obj.batch.failures != nil {
		return obj.batch.failures
	}
	return &BatchFailures{}
}

func mustJSON(v any) []byte {
	b, err := jsonx.Encode(v)
	if err != nil {
		return []byte(fmt.Sprint(v))
	}
	return b
}

// shrinkBatch halves the object's batch size (down to 1) after a batch of n
// records timed out: batches that time out together halve it once.
func (t *Target) shrinkBatch(object string, n int) {
	size := t.batchSize[object]
	if size == nil {
		return
	}
	want := int64(max(1, n/2))
	for {
		cur := size.Load()
		if cur <= want || size.CompareAndSwap(cur, want) {
			return
		}
	}
}

// batchKey is the idempotency key of a batch of inserts: one key for the
// same records in the same order.
func batchKey(ctx context.Context, obj object, items []batchItem) string {
	h := sha256.New()
	for _, it := range items {
		h.Write([]byte(idempotencyKey(ctx, obj, *it.ch)))
	}
	return hex.EncodeToString(h.Sum(nil))[:40]
}
