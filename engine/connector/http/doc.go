// Package httptarget is the declarative REST kind of connection ("http"):
// a base URL, an auth scheme, and per object an insert endpoint, an update
// endpoint, where the new id is in the insert response, and optionally a
// lookup endpoint. It lives in engine/connector/http; the package is named
// httptarget so that it does not shadow net/http where both are used.
//
// Each change is one request. Requests in flight are bounded per Target
// (Config.Concurrency, shared by every call), paced by Config.RateLimit, and
// a 429 pauses the whole connection for its Retry-After.
//
// The one thing to know: an insert is a POST, which is not idempotent. Once
// its request has been written to the connection, a timeout, a dropped
// connection or a 504 makes the change Ambiguous and it is never retried
// here (a retry could create the record twice); the engine reconciles it.
// Updates (PUT/PATCH) are retried in the same situation. How each answer is
// classified:
//
//	2xx                          done (an insert's id from id_path; no id: Ambiguous)
//	401, 403                     Auth: the call stops; changes not started stay undone
//	429                          wait Retry-After (the whole connection), retry; then RateLimited
//	408, 500, 502, 503           retry with backoff; then Retryable
//	504                          insert: Ambiguous; update: as 503
//	other 5xx                    Retryable
//	404 on an update             NotFound
//	3xx, other 4xx               Rejected, with the target's message
//	network error, not sent      retry with backoff; then Retryable
//	network error or timeout     insert: Ambiguous; update: retried, then Retryable
//	after sending
//
// Until a request on the Target has been answered with something other than
// 401/403/429/5xx, requests go one at a time, so that bad credentials cost
// one failed request, not one per concurrency slot.
//
// Some APIs echo the request's Authorization header in their error bodies.
// Error messages quote what the target said, so the Target redacts its
// credentials (the header value, the token, the basic username, password and
// "user:pass", as they are and encoded: see connector.Redactor) from every
// error it makes, before it trims a message; Secrets reports them, for the
// engine to redact what it stores.
package httptarget
