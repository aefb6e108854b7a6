// Package notify owns run alerts: the events a run emits (run.started,
// run.succeeded, run.succeeded_with_errors, run.failed, run.recovered) as
// signed webhooks, and the few e-mails a person must read (a scheduled run
// that failed, a run that failed too many of its records, a recovery).
//
// The one thing to know: nothing here blocks the run that reports. RunStarted
// and RunEnded return at once; deliveries go on in the background, retried
// with backoff, each attempt written to ferry.webhook_deliveries. A recovery
// is decided from ferry.runs (how the sync's previous run ended), not from
// memory, so it is sent once whichever replica ran either run, and after a
// restart.
//
// Webhooks are signed the way Stripe signs them: the header
//
//	Ferry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
//
// keyed with the secret the webhook's secret_env names. Verify checks it
// (signature, and a timestamp within a tolerance, against replays).
package notify
