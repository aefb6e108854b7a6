package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humaecho"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/api/projects"
	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/secrets"
	"github.com/ferry-sync/ferry/queries"
)

// Prefix is where the API lives.
const Prefix = "/api/v1"

// ContractVersion is the version of the API's contract, its OpenAPI
// document: it changes when the API does, not with each build of Ferry.
const ContractVersion = "1.0.0"

// Options are what a Server works with.
type Options struct {
	DB       *pgxpool.Pool
	Engine   *engine.Engine
	Projects *projects.Store
	Secrets  *secrets.Store
	Tokens   *auth.Tokens
	Kinds    *connector.Registry
	Logger   *slog.Logger
	Version  string
	// Queue takes the runs the API starts (any replica works them).
	Queue RunQueue
	// Schedules lists the schedules and their next ticks.
	Schedules Schedules
	// MaxBody bounds a request's body (default 8 MiB).
	MaxBody int64
}

// Server is the REST API.
type Server struct {
	opts    Options
	echo    *echo.Echo
	api     huma.API
	q       *queries.Queries
	log     *slog.Logger
	metrics *metrics
}

// New builds the API's routes.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBody == 0 {
		opts.MaxBody = 8 << 20
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{opts: opts, echo: e, q: queries.New(opts.DB), log: opts.Logger, metrics: newMetrics(opts.Engine, opts.Queue)}

	e.Use(s.logRequests)
	e.HTTPErrorHandler = s.echoError

	// Huma's error factory is process-wide; every Server sets the same one.
	huma.NewError = newError
	cfg := huma.DefaultConfig("Ferry", ContractVersion)
	cfg.Info.Description = "Ferry keeps business applications in sync with a PostgreSQL warehouse. " +
		"Every operation needs an API token (Authorization: Bearer …) whose role allows it: viewer reads; " +
		"editor also changes syncs and scripts and triggers runs; admin also manages connections, secrets, tokens and imports."
	cfg.OpenAPIPath = Prefix + "/openapi"
	cfg.DocsPath, cfg.SchemasPath = "", ""
	cfg.CreateHooks = nil // no $schema links in bodies
	cfg.FieldsOptionalByDefault = true
	cfg.AllowAdditionalPropertiesByDefault = false
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"token": {Type: "http", Scheme: "bearer", Description: "An API token made with `ferry token create`."},
	}
	cfg.Security = []map[string][]string{{"token": {}}}
	cfg.Servers = []*huma.Server{{URL: "http://127.0.0.1:8080", Description: "ferry serve on its default address (--addr changes it)"}}
	cfg.Tags = tags()
	s.api = humaecho.New(e, cfg)
	registry := s.api.OpenAPI().Components.Schemas
	// Types whose JSON form is not their Go form.
	registry.RegisterTypeAlias(reflect.TypeOf(json.RawMessage{}), reflect.TypeOf((*any)(nil)).Elem())
	registry.RegisterTypeAlias(reflect.TypeOf(project.Duration{}), reflect.TypeOf(""))
	registry.RegisterTypeAlias(reflect.TypeOf(time.Duration(0)), reflect.TypeOf(int64(0)))
	// Added after humaecho.New, whose OpenAPI document stays public: a client
	// reads it before it has a token.
	s.api.UseMiddleware(s.authorize)

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})))
	s.routes()
	return s
}

// Handler is the API as an http.Handler, with its body limit.
func (s *Server) Handler() http.Handler {
	return http.MaxBytesHandler(s.echo, s.opts.MaxBody)
}

// Document is the API's OpenAPI 3.1 document, as served and as committed
// in api/openapi.json, without a running server.
func Document() ([]byte, error) {
	s := New(Options{})
	b, err := json.MarshalIndent(s.api.OpenAPI(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("writing the OpenAPI document: %w", err)
	}
	return append(b, '\n'), nil
}

// API is the Huma API (its OpenAPI document, its operations).
func (s *Server) API() huma.API { return s.api }

// Routes lists the echo routes (method and path), Huma's and the others.
func (s *Server) Routes() []*echo.Route { return s.echo.Routes() }

// Serve listens on addr until ctx ends, then shuts down: requests in
// flight get a few seconds. (Runs belong to the run queue, which the
// caller stops.)
func (s *Server) Serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Minute, // plans of large scopes take a while
		IdleTimeout:       2 * time.Minute,
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

// echoError answers errors raised outside Huma (unknown routes, too large
// bodies) in the same shape.
func (s *Server) echoError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status := http.StatusInternalServerError
	msg := err.Error()
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		status, msg = http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", mbe.Limit)
	case errors.As(err, &he):
		status, msg = he.Code, fmt.Sprint(he.Message)
	}
	_ = c.JSON(status, newError(status, msg))
}

type tokenKey struct{}

// authorize lets an operation through only with a valid token whose role
// allows the role the operation declares. An operation that declares none
// is refused: fail closed.
func (s *Server) authorize(ctx huma.Context, next func(huma.Context)) {
	need, ok := ctx.Operation().Metadata["role"].(auth.Role)
	if !ok {
		_ = huma.WriteErr(s.api, ctx, http.StatusForbidden, "this operation declares no role and is refused")
		return
	}
	text, found := strings.CutPrefix(ctx.Header("Authorization"), "Bearer ")
	if !found || text == "" {
		_ = huma.WriteErr(s.api, ctx, http.StatusUnauthorized, auth.ErrNoToken.Error())
		return
	}
	tok, err := s.opts.Tokens.Verify(ctx.Context(), strings.TrimSpace(text))
	if err != nil {
		status := http.StatusUnauthorized
		if !errors.Is(err, auth.ErrInvalidToken) {
			status = http.StatusServiceUnavailable
		}
		_ = huma.WriteErr(s.api, ctx, status, err.Error())
		return
	}
	humaecho.Unwrap(ctx).Set("token", tok.ID)
	if !tok.Role.Allows(need) {
		_ = huma.WriteErr(s.api, ctx, http.StatusForbidden, fmt.Sprintf("this needs the %s role; token %s is %s", need, tok.ID, tok.Role))
		return
	}
	next(huma.WithValue(ctx, tokenKey{}, tok))
}

// actor names who made a change, for the project's history.
func actor(ctx context.Context) string {
	if tok, ok := ctx.Value(tokenKey{}).(auth.Token); ok {
		return "token " + tok.ID + " (" + tok.Name + ")"
	}
	return "api"
}

// logRequests logs every request: method, route, status, time, token id;
// never a body or a header's value.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		status := c.Response().Status
		d := time.Since(start)
		s.metrics.request(c.Request().Method, route, status, d)
		tok, _ := c.Get("token").(string)
		s.log.Info("request", "method", c.Request().Method, "route", route, "status", status,
			"ms", float64(d.Microseconds())/1000, "token", tok)
		return nil
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok", "version": s.opts.Version})
}

// readyz says whether the server can work: the warehouse answers and its
// state schema is migrated.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	if err := s.opts.DB.Ping(ctx); err != nil {
		return c.JSON(http.StatusServiceUnavailable, newError(http.StatusServiceUnavailable, "the warehouse does not answer"))
	}
	if err := queries.CheckMigrated(ctx, s.opts.DB); err != nil {
		return c.JSON(http.StatusServiceUnavailable, newError(http.StatusServiceUnavailable, err.Error()))
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
