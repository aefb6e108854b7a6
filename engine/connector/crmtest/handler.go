package crmtest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/internal/jsonx"
)

const maxBody = 1 << 20

// ServeHTTP answers one request: counters, latency, auth, injected faults,
// then the collection's work.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	object, rest, _ := strings.Cut(strings.Trim(r.URL.Path, "/"), "/")
	s.countRequest(r.Method, object)

	if d := time.Duration(s.latency.Load()); d > 0 && !s.sleep(r, d) {
		return
	}
	if !s.authorized(r) {
		writeReply(w, s.echo(r, message(http.StatusUnauthorized, "invalid token")))
		return
	}
	if s.window != nil {
		if wait, ok := s.window.admit(time.Now()); !ok {
			if s.window.retryAfter {
				w.Header().Set("Retry-After", formatRetryAfter(wait))
			}
			writeReply(w, s.echo(r, message(http.StatusTooManyRequests, "rate limit exceeded")))
			return
		}
	}
	if take(&s.failN) {
		writeReply(w, s.echo(r, message(int(s.failCode.Load()), "injected failure")))
		return
	}
	if take(&s.limitN) {
		w.Header().Set("Retry-After", formatRetryAfter(time.Duration(s.limitFor.Load())))
		writeReply(w, s.echo(r, message(http.StatusTooManyRequests, "rate limit exceeded")))
		return
	}
	hang := take(&s.hangN)
	rep := s.handle(r, object, rest)
	if hang {
		s.hang(w, r)
		return
	}
	writeReply(w, s.echo(r, rep))
}

// echo makes an error answer quote the request's Authorization header, when
// the server was asked to (Options.EchoAuthInErrors): in a "request" object
// and in the message, where a client that reports the message shows it.
func (s *Server) echo(r *http.Request, rep reply) reply {
	body, ok := rep.body.(map[string]any)
	if !s.echoAuth || rep.status < 400 || !ok {
		return rep
	}
	auth := r.Header.Get("Authorization")
	echoed := maps.Clone(body)
	echoed["request"] = map[string]any{
		"method":  r.Method,
		"path":    r.URL.Path,
		"headers": map[string]any{"Authorization": auth},
	}
	msg, ok := body["message"].(string)
	if !ok {
		msg = "validation failed"
	}
	echoed["message"] = msg + " (Authorization: " + auth + ")"
	return reply{rep.status, echoed}
}

func (s *Server) handle(r *http.Request, object, rest string) reply {
	c := s.collectionFor(object)
	if c == nil {
		return message(http.StatusNotFound, "unknown object %q", object)
	}
	switch {
	case rest == "" && r.Method == http.MethodPost:
		fields, rep, ok := c.readFields(r)
		if !ok {
			return rep
		}
		return c.create(fields)
	case rest == "" && r.Method == http.MethodGet:
		return c.search(nil)
	case rest == "search" && r.Method == http.MethodGet:
		match := make(map[string]string)
		for k, vs := range r.URL.Query() {
			if len(vs) > 0 && c.searchable(k) {
				match[k] = vs[0]
			}
		}
		return c.search(match)
	case rest == "batch/create" && r.Method == http.MethodPost:
		inputs, rep, ok := s.batchInputs(r)
		if !ok {
			return rep
		}
		return c.batchCreate(inputs)
	case rest == "batch/update" && r.Method == http.MethodPost:
		inputs, rep, ok := s.batchInputs(r)
		if !ok {
			return rep
		}
		return c.batchUpdate(inputs)
	case rest == "" || strings.Contains(rest, "/"):
		return message(http.StatusNotFound, "no route for %s %s", r.Method, r.URL.Path)
	}
	id := rest
	switch r.Method {
	case http.MethodGet:
		return c.get(id)
	case http.MethodPatch, http.MethodPut:
		fields, rep, ok := c.readFields(r)
		if !ok {
			return rep
		}
		return c.update(id, fields, r.Method == http.MethodPut)
	case http.MethodDelete:
		return c.remove(id)
	default:
		return message(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
	}
}

// readFields decodes the request body: a JSON object, wrapped under BodyKey
// when the object has one. Numbers keep their exact digits.
func (c *collection) readFields(r *http.Request) (map[string]any, reply, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, message(http.StatusBadRequest, "reading body: %v", err), false
	}
	if len(b) > maxBody {
		return nil, message(http.StatusRequestEntityTooLarge, "body over %d bytes", maxBody), false
	}
	body, ok := jsonx.DecodeObject(b)
	if !ok {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil || body == nil {
			return nil, message(http.StatusBadRequest, "body must be a JSON object"), false
		}
	}
	if c.rules.BodyKey == "" {
		return body, reply{}, true
	}
	fields, ok := body[c.rules.BodyKey].(map[string]any)
	if !ok {
		return nil, message(http.StatusBadRequest, "body must be {%q: {...}}", c.rules.BodyKey), false
	}
	return fields, reply{}, true
}

func (s *Server) authorized(r *http.Request) bool {
	want := *s.token.Load()
	if want == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sleep waits d, reporting false when the client left or the server closes.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	start := time.Now()
	s.clockOnce.Do(func() { s.clock = newClock() })
	var ok bool
	if s.clock != nil {
		ok = await(s, r, s.clock.after(start.Add(d)))
	} else {
		timer := time.NewTimer(d)
		defer timer.Stop()
		ok = await(s, r, timer.C)
	}
	if ok {
		s.waits.Add(1)
		s.waited.Add(int64(time.Since(start)))
	}
	return ok
}

// await waits for done, reporting false when the client leaves or the
// server closes first.
func await[T any](s *Server, r *http.Request, done <-chan T) bool {
	select {
	case <-done:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

// hang never answers: it waits for the client to give up or the server to
// close, then drops the connection so that no response is ever seen.
func (s *Server) hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.closing:
	}
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
		}
	}
}

func writeReply(w http.ResponseWriter, rep reply) {
	if rep.body == nil {
		w.WriteHeader(rep.status)
		return
	}
	b, err := marshal(rep.body)
	if err != nil {
		rep.status = http.StatusInternalServerError
		b = []byte(fmt.Sprintf(`{"message":%q}`, err.Error()))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = w.Write(b)
}
