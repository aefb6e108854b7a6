// Package httptarget is the declarative REST kind of connection ("http"):
// a base URL, an auth scheme, and per object an insert endpoint, an update
// endpoint, where the new id is in the insert response, and optionally a
// lookup, a batch endpoint and idempotent inserts. It lives in
// engine/connector/http; the package is named httptarget so that it does
// not shadow net/http where both are used. Settings are decoded with
// connector.DecodeStrict, so every mistake is named by its full path
// (objects.contacts.batch.size).
//
// Each change is one request, or, for an object with a batch, many changes
// are one request (auth.go, batch.go, lookup.go, template.go hold the
// parts). The connection's budget (budget.go) is shared by every Target
// opened in the process for the same connection: requests in flight
// (concurrency), per second (rate_limit), per window (rate_window), per
// day (daily_quota), and the pause a 429 imposes. Two syncs on one
// connection never exceed its limits together.
//
// The one thing to know: an insert is a POST, which is not idempotent. Once
// its request has been written to the connection, a timeout, a dropped
// connection or a 504 makes the change Ambiguous and it is never retried
// here (a retry could create the record twice); the engine reconciles it.
// An object that makes inserts idempotent (client_id: the id is chosen
// here, derived from the sync, the object and the source id, and "already
// exists" counts as success; idempotency_key: a header the API honours)
// has its inserts retried like updates. A batch whose answer was lost is
// Ambiguous as a whole, each of its inserts, and halves the object's batch
// size. How each answer is classified:
//
//	2xx                          done (an insert's id from id_path; no id: Ambiguous)
//	401, auth_error answers      renew the token (login, oauth2) once and resend; else Auth
//	403                          Auth: the call stops; changes not started stay undone
//	429                          wait Retry-After, or back off (the whole connection),
//	                             retry until retry_budget is spent; then RateLimited
//	408, 500, 502, 503           retry with backoff; then Retryable
//	504                          insert: Ambiguous; update: as 503
//	other 5xx                    Retryable
//	404 on an update             NotFound
//	3xx, other 4xx               Rejected, with the fields' errors (errors) or the target's message
//	network error, not sent      retry with backoff; then Retryable
//	network error or timeout     insert: Ambiguous; update: retried, then Retryable
//	after sending
//
// Every classified error keeps the answer's body (redacted, capped) in
// connector.Error.Body. Until a request on the Target has been answered
// with something other than 401/403/429/5xx, requests go one at a time, so
// that bad credentials cost one failed request, not one per concurrency
// slot; after a 429, requests go one at a time until one passes, so that
// the end of a pause does not send a burst into the same limit.
//
// Some APIs echo the request's Authorization header in their error bodies.
// Error messages quote what the target said, so the Target redacts its
// credentials (the header value, the token, the basic username, password and
// "user:pass", the client secret, the refresh token and every token a login
// or token endpoint hands out, as they are and encoded: see
// connector.Redactor) from every error it makes, before it trims a message;
// Secrets reports them, and WatchSecrets (connector.SecretWatcher) reports
// the tokens obtained later, for the engine to redact what it stores.
package httptarget
