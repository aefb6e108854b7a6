package httptarget

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ferry-sync/ferry/engine/connector"
)

// authSettings is Auth resolved: how a request gets its credentials.
type authSettings struct {
	kind   string // none, static, login, oauth2
	header string // the header that carries them
	static connector.Secret
	scheme string // what precedes a token: "Bearer " or ""
	login  *loginSettings
	oauth  *oauthSettings
}

type loginSettings struct {
	method        string
	url           string
	body          *jnode
	tokenPath     string
	expiresInPath string
	username      connector.Secret
	password      connector.Secret
}

type oauthSettings struct {
	tokenURL     string
	clientID     connector.Secret
	clientSecret connector.Secret
	refreshToken connector.Secret // zero: client credentials
	scopes       []string
	params       url.Values
	style        oauth2.AuthStyle
}

// resolveAuth checks a and reads its secrets, returning how requests
// authenticate and every secret known now: the header value and the values
// it is made of, since a target may echo any of them (the token alone, or
// the base64 of "user:pass" without "Basic ").
func resolveAuth(a Auth, env connector.LookupEnv, baseURL string) (authSettings, []connector.Secret, error) {
	header := "Authorization"
	if a.Header != "" {
		header = http.CanonicalHeaderKey(a.Header)
	}
	scheme := "Bearer "
	switch strings.TrimSpace(a.Scheme) {
	case "":
	case "none":
		scheme = ""
	default:
		scheme = strings.TrimSpace(a.Scheme) + " "
	}
	if a.Scheme != "" && a.Type != "bearer" && a.Type != "login" && a.Type != "oauth2" {
		return authSettings{}, nil, problem("auth.scheme", "is for auth types bearer, login and oauth2")
	}
	if a.Login != nil && a.Type != "login" {
		return authSettings{}, nil, problem("auth.login", "is for auth type login")
	}
	if a.TokenURL != "" && a.Type != "oauth2" {
		return authSettings{}, nil, problem("auth.token_url", "is for auth type oauth2")
	}
	switch a.Type {
	case "", "none":
		if a.TokenEnv != "" || a.UsernameEnv != "" || a.ValueEnv != "" || a.ClientSecretEnv != "" {
			return authSettings{}, nil, fmt.Errorf("auth.type is required when auth names a secret: bearer, basic, header, login or oauth2")
		}
		return authSettings{kind: "none"}, nil, nil
	case "bearer":
		token, err := connector.SecretFromEnv(env, "auth.token_env", a.TokenEnv)
		if err != nil {
			return authSettings{}, nil, err
		}
		value := connector.NewSecret(scheme + token.Reveal())
		return authSettings{kind: "static", header: header, static: value}, []connector.Secret{token, value}, nil
	case "basic":
		user, err := connector.SecretFromEnv(env, "auth.username_env", a.UsernameEnv)
		if err != nil {
			return authSettings{}, nil, err
		}
		pass, err := connector.SecretFromEnv(env, "auth.password_env", a.PasswordEnv)
		if err != nil {
			return authSettings{}, nil, err
		}
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(user.Reveal(), pass.Reveal())
		value := connector.NewSecret(req.Header.Get("Authorization"))
		pair := connector.NewSecret(user.Reveal() + ":" + pass.Reveal())
		return authSettings{kind: "static", header: "Authorization", static: value}, []connector.Secret{user, pass, pair, value}, nil
	case "header":
		if a.Header == "" {
			return authSettings{}, nil, fmt.Errorf("auth.header is required for auth type header")
		}
		value, err := connector.SecretFromEnv(env, "auth.value_env", a.ValueEnv)
		if err != nil {
			return authSettings{}, nil, err
		}
		return authSettings{kind: "static", header: header, static: value}, []connector.Secret{value}, nil
	case "login":
		return resolveLogin(a, env, baseURL, header, scheme)
	case "oauth2":
		return resolveOAuth(a, env, header, scheme)
	default:
		return authSettings{}, nil, fmt.Errorf("auth.type %q: use bearer, basic, header, login, oauth2 or none", a.Type)
	}
}

func resolveLogin(a Auth, env connector.LookupEnv, baseURL, header, scheme string) (authSettings, []connector.Secret, error) {
	l := a.Login
	if l == nil {
		return authSettings{}, nil, problem("auth.login", "is required for auth type login: {path, body, token_path}")
	}
	ls := &loginSettings{
		method:        strings.ToUpper(l.Method),
		tokenPath:     l.TokenPath,
		expiresInPath: l.ExpiresInPath,
	}
	if ls.method == "" {
		ls.method = http.MethodPost
	}
	if ls.tokenPath == "" {
		ls.tokenPath = "token"
	}
	switch {
	case strings.HasPrefix(l.Path, "/"):
		ls.url = baseURL + l.Path
	case strings.HasPrefix(l.Path, "http://") || strings.HasPrefix(l.Path, "https://"):
		ls.url = l.Path
	default:
		return authSettings{}, nil, problem("auth.login.path", "%q must start with / (under base_url) or be an http(s) URL", l.Path)
	}
	if u, err := url.Parse(ls.url); err != nil || u.User != nil {
		return authSettings{}, nil, problem("auth.login.path", "%q is not a URL without credentials", l.Path)
	}
	body := l.Body
	if body == nil {
		body = map[string]any{"username": "{{username}}", "password": "{{password}}"}
	}
	var err error
	if body, err = decodeTemplate(body); err != nil {
		return authSettings{}, nil, problem("auth.login.body", "%v", err)
	}
	if ls.body, err = compileJSON(body, loginNames, "auth.login.body"); err != nil {
		return authSettings{}, nil, err
	}
	var secrets []connector.Secret
	if a.UsernameEnv != "" || ls.body.uses("username") {
		if ls.username, err = connector.SecretFromEnv(env, "auth.username_env", a.UsernameEnv); err != nil {
			return authSettings{}, nil, err
		}
		secrets = append(secrets, ls.username)
	}
	if ls.password, err = connector.SecretFromEnv(env, "auth.password_env", a.PasswordEnv); err != nil {
		return authSettings{}, nil, err
	}
	secrets = append(secrets, ls.password)
	return authSettings{kind: "login", header: header, scheme: scheme, login: ls}, secrets, nil
}

func resolveOAuth(a Auth, env connector.LookupEnv, header, scheme string) (authSettings, []connector.Secret, error) {
	u, err := url.Parse(a.TokenURL)
	if a.TokenURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return authSettings{}, nil, problem("auth.token_url", "%q must be the http(s) URL of the token endpoint", a.TokenURL)
	}
	os := &oauthSettings{tokenURL: a.TokenURL, scopes: a.Scopes, params: url.Values{}}
	for k, v := range a.Params {
		os.params.Set(k, v)
	}
	switch a.AuthStyle {
	case "":
		os.style = oauth2.AuthStyleAutoDetect
	case "header":
		os.style = oauth2.AuthStyleInHeader
	case "params":
		os.style = oauth2.AuthStyleInParams
	default:
		return authSettings{}, nil, problem("auth.auth_style", "%q: use header or params", a.AuthStyle)
	}
	if os.clientID, err = connector.SecretFromEnv(env, "auth.client_id_env", a.ClientIDEnv); err != nil {
		return authSettings{}, nil, err
	}
	if os.clientSecret, err = connector.SecretFromEnv(env, "auth.client_secret_env", a.ClientSecretEnv); err != nil {
		return authSettings{}, nil, err
	}
	secrets := []connector.Secret{os.clientSecret}
	if a.RefreshTokenEnv != "" {
		if os.refreshToken, err = connector.SecretFromEnv(env, "auth.refresh_token_env", a.RefreshTokenEnv); err != nil {
			return authSettings{}, nil, err
		}
		secrets = append(secrets, os.refreshToken)
	}
	return authSettings{kind: "oauth2", header: header, scheme: scheme, oauth: os}, secrets, nil
}

// credentials give each request its auth header, and renew a token that
// expires or is refused. One per Target.
type credentials struct {
	t *Target
	s *authSettings

	lock chan struct{} // one login at a time; honours ctx, unlike a mutex

	mu        sync.Mutex // guards what follows
	value     connector.Secret
	token     connector.Secret
	refreshAt time.Time // zero: only when refused
	gen       uint64    // counts tokens obtained
	refresh   connector.Secret
}

func newCredentials(t *Target) *credentials {
	c := &credentials{t: t, s: &t.s.auth, lock: make(chan struct{}, 1)}
	if c.s.kind == "static" {
		c.value = c.s.static
	}
	if c.s.oauth != nil {
		c.refresh = c.s.oauth.refreshToken
	}
	return c
}

// renewable says whether a refused token can be replaced by a new one.
func (c *credentials) renewable() bool { return c.s.kind == "login" || c.s.kind == "oauth2" }

// current returns the header value to send and the generation of the token
// in it. It logs in (or asks the token endpoint) when there is no token yet
// or the one held expires soon.
func (c *credentials) current(ctx context.Context) (string, uint64, *connector.Error) {
	switch c.s.kind {
	case "none":
		return "", 0, nil
	case "static":
		return c.value.Reveal(), 0, nil
	}
	c.mu.Lock()
	value, gen, refreshAt := c.value, c.gen, c.refreshAt
	c.mu.Unlock()
	if !value.IsZero() && (refreshAt.IsZero() || time.Now().Before(refreshAt)) {
		return value.Reveal(), gen, nil
	}
	if err := c.renew(ctx, gen); err != nil {
		return "", 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value.Reveal(), c.gen, nil
}

// renew gets a new token unless one newer than gen was got meanwhile (by
// another request that met the same refusal or expiry).
func (c *credentials) renew(ctx context.Context, gen uint64) *connector.Error {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return c.t.newError(connector.Retryable, 0, "waiting for a new token: "+context.Cause(ctx).Error(), ctx.Err())
	}
	defer func() { <-c.lock }()
	c.mu.Lock()
	fresh := c.gen != gen && !c.value.IsZero() && (c.refreshAt.IsZero() || time.Now().Before(c.refreshAt))
	c.mu.Unlock()
	if fresh {
		return nil
	}
	var tok tokenAnswer
	var err *connector.Error
	switch c.s.kind {
	case "login":
		tok, err = c.t.login(ctx)
	case "oauth2":
		c.mu.Lock()
		refresh := c.refresh
		c.mu.Unlock()
		tok, err = c.t.oauthToken(ctx, refresh)
	}
	if err != nil {
		return err
	}
	value := connector.NewSecret(c.s.scheme + tok.token.Reveal())
	// Known to every redactor before it is sent anywhere.
	c.t.addSecrets(tok.token.Reveal(), value.Reveal(), tok.refresh.Reveal())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token, c.value = tok.token, value
	if !tok.refresh.IsZero() {
		c.refresh = tok.refresh
	}
	c.refreshAt = time.Time{}
	// A token that has expired already when it comes (a clock that is off)
	// is used until it is refused, not renewed before every request.
	if life := time.Until(tok.expiry); !tok.expiry.IsZero() && life > 0 {
		c.refreshAt = tok.expiry.Add(-min(30*time.Second, life/5))
	}
	c.gen++
	return nil
}

// secrets returns the token held now and its header value.
func (c *credentials) secrets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range []connector.Secret{c.token, c.refresh} {
		if !s.IsZero() {
			out = append(out, s.Reveal())
		}
	}
	if c.s.kind != "static" && !c.value.IsZero() {
		out = append(out, c.value.Reveal())
	}
	return out
}

// tokenAnswer is a token obtained from a login or a token endpoint.
type tokenAnswer struct {
	token   connector.Secret
	refresh connector.Secret // a rotated refresh token, if any
	expiry  time.Time        // zero: unknown
}

// loginEnv renders a login body.
type loginEnv struct{ l *loginSettings }

func (e loginEnv) typed(dst []byte, name, _ string) ([]byte, error) {
	v := e.l.password.Reveal()
	if name == "username" {
		v = e.l.username.Reveal()
	}
	return appendJSONString(dst, v), nil
}

func (e loginEnv) text(st *stext) (string, error) {
	return st.execute(map[string]any{
		"username": func() string { return e.l.username.Reveal() },
		"password": func() string { return e.l.password.Reveal() },
	})
}

func (loginEnv) each(dst []byte, _ *jnode) ([]byte, error) { return dst, nil }

// login trades the username and password for a token, retrying what is
// worth retrying (network errors, 5xx, 429) like any request.
func (t *Target) login(ctx context.Context) (tokenAnswer, *connector.Error) {
	l := t.s.auth.login
	where := "logging in (" + l.method + " " + redactURL(l.url) + ")"
	body, err := render(nil, l.body, loginEnv{l})
	if err != nil {
		return tokenAnswer{}, t.newError(connector.Auth, 0, where+": building the body: "+err.Error(), nil)
	}
	var answer []byte
	cerr := t.retryAuthRequest(ctx, where, func(ctx context.Context) (int, http.Header, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, l.method, l.url, bytes.NewReader(body))
		if err != nil {
			return 0, nil, nil, err
		}
		req.Header = t.bodyHeader.Clone()
		res, err := t.client.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(io.LimitReader(res.Body, maxResponse))
		answer = b
		return res.StatusCode, res.Header, b, err
	})
	if cerr != nil {
		return tokenAnswer{}, cerr
	}
	v, err := decodeJSON(answer)
	if err != nil {
		return tokenAnswer{}, t.newError(connector.Auth, 0, where+": the answer is not JSON", nil)
	}
	raw, ok := lookupPath(v, l.tokenPath)
	token, isText := raw.(string)
	if !ok || !isText || token == "" {
		return tokenAnswer{}, t.newError(connector.Auth, 0, fmt.Sprintf("%s: the answer has no token at %q (auth.login.token_path)", where, l.tokenPath), nil)
	}
	tok := tokenAnswer{token: connector.NewSecret(token)}
	if l.expiresInPath != "" {
		if raw, ok := lookupPath(v, l.expiresInPath); ok {
			if secs, ok := seconds(raw); ok {
				tok.expiry = time.Now().Add(secs)
			}
		}
	}
	if tok.expiry.IsZero() {
		tok.expiry = jwtExpiry(token)
	}
	return tok, nil
}

// oauthToken asks the token endpoint for an access token: with the
// refresh token when there is one, else by the client credentials grant.
func (t *Target) oauthToken(ctx context.Context, refresh connector.Secret) (tokenAnswer, *connector.Error) {
	o := t.s.auth.oauth
	where := "getting an OAuth2 token from " + redactURL(o.tokenURL)
	var got *oauth2.Token
	cerr := t.retryAuthRequest(ctx, where, func(ctx context.Context) (int, http.Header, []byte, error) {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, t.client)
		var err error
		if refresh.IsZero() {
			cc := clientcredentials.Config{
				ClientID: o.clientID.Reveal(), ClientSecret: o.clientSecret.Reveal(),
				TokenURL: o.tokenURL, Scopes: o.scopes, EndpointParams: o.params, AuthStyle: o.style,
			}
			got, err = cc.Token(ctx)
		} else {
			cfg := oauth2.Config{
				ClientID: o.clientID.Reveal(), ClientSecret: o.clientSecret.Reveal(),
				Endpoint: oauth2.Endpoint{TokenURL: o.tokenURL, AuthStyle: o.style}, Scopes: o.scopes,
			}
			got, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh.Reveal()}).Token()
		}
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			return re.Response.StatusCode, re.Response.Header, re.Body, nil
		}
		if err != nil {
			return 0, nil, nil, err
		}
		return http.StatusOK, nil, nil, nil
	})
	if cerr != nil {
		return tokenAnswer{}, cerr
	}
	if got == nil || got.AccessToken == "" {
		return tokenAnswer{}, t.newError(connector.Auth, 0, where+": the answer has no access_token", nil)
	}
	tok := tokenAnswer{token: connector.NewSecret(got.AccessToken), expiry: got.Expiry}
	if got.RefreshToken != "" && got.RefreshToken != refresh.Reveal() {
		tok.refresh = connector.NewSecret(got.RefreshToken)
	}
	return tok, nil
}

// retryAuthRequest makes a login or token request: answers 400, 401 and 403
// refuse the credentials (Auth, and the call stops); 429, 5xx and network
// errors are retried as any request is. The request passes the
// connection's budget, not the credentials probe (it is the probe's own).
func (t *Target) retryAuthRequest(ctx context.Context, where string, do func(context.Context) (int, http.Header, []byte, error)) *connector.Error {
	var limited time.Duration
	for attempt := 0; ; attempt++ {
		slot, qerr := t.budget.waitLimits(ctx, t)
		if qerr != nil {
			return qerr
		}
		if ctx.Err() != nil {
			t.budget.windowDone(slot)
			return t.newError(connector.Retryable, 0, where+": "+context.Cause(ctx).Error(), ctx.Err())
		}
		rctx, cancel := context.WithTimeout(ctx, t.s.timeout)
		began := time.Now()
		status, header, body, err := do(rctx)
		cancel()
		t.budget.windowDone(slot)
		connector.Observe(ctx, status, time.Since(began))
		t.budget.learn(status, err)
		retriesLeft := attempt < t.s.retries
		switch {
		case err != nil && ctx.Err() != nil:
			return t.newError(connector.Retryable, 0, where+": "+context.Cause(ctx).Error(), ctx.Err())
		case err != nil && retriesLeft:
			if !t.backoff(ctx, attempt) {
				return t.newError(connector.Retryable, 0, where+": "+context.Cause(ctx).Error(), ctx.Err())
			}
			continue
		case err != nil && connector.Unreached(err):
			return t.newError(connector.Unreachable, 0, where+": cannot reach it: "+t.describe(err), err)
		case err != nil:
			return t.newError(connector.Retryable, 0, where+": "+t.describe(err), err)
		case status >= 200 && status < 300:
			return nil
		case status == http.StatusTooManyRequests:
			wait, ok := t.budget.limited(header, began, t)
			limited += wait
			if !ok || limited > t.s.retryBudget {
				return t.failure(connector.RateLimited, status, where, body, nil)
			}
			continue
		case retryableStatus(status) && retriesLeft:
			if !t.backoff(ctx, attempt) {
				return t.newError(connector.Retryable, 0, where+": "+context.Cause(ctx).Error(), ctx.Err())
			}
			continue
		case status >= 500:
			return t.failure(connector.Retryable, status, where, body, nil)
		default:
			return t.failure(connector.Auth, status, where+": the credentials were refused", body, nil)
		}
	}
}

// seconds reads a number of seconds (a JSON number or a numeric string).
func seconds(v any) (time.Duration, bool) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		n, err := x.Float64()
		if err != nil {
			return 0, false
		}
		f = n
	case string:
		if _, err := fmt.Sscanf(x, "%g", &f); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	if f <= 0 || f > 1e9 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// jwtExpiry reads the "exp" claim of a JWT without checking its signature
// (the server checks it; the client only wants to renew it in time). Zero
// when token is not a JWT or has no exp.
func jwtExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == "" {
		return time.Time{}
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}

// redactURL drops a URL's query (it may hold a key) for a message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the configured URL"
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}
