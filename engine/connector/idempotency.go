package connector

import "context"

type scopeKey struct{}

// WithIdempotencyScope returns a context under which targets derive the
// idempotency keys and client-chosen ids of inserts from scope as well as
// from the object and the change's SourceID. The engine passes the sync's
// name, so that two syncs writing the same source ids to one object never
// share an id: without a scope, an insert of source id 7 by one sync would
// be taken for a retry of another sync's insert of source id 7.
func WithIdempotencyScope(ctx context.Context, scope string) context.Context {
	return context.WithValue(ctx, scopeKey{}, scope)
}

// IdempotencyScope returns ctx's idempotency scope ("" when none was set).
func IdempotencyScope(ctx context.Context) string {
	s, _ := ctx.Value(scopeKey{}).(string)
	return s
}

// SecretWatcher is the optional capability of a target whose secrets change
// while it is open: the access tokens a login or an OAuth2 flow hands out.
// The engine calls WatchSecrets once, right after opening the target, with
// a function (its Redactor's Add) that the target calls with every new
// secret before it sends it anywhere. SecretHolder still reports the secrets
// known at the time it is asked.
type SecretWatcher interface {
	WatchSecrets(add func(secrets ...string))
}
