package api

import (
	"context"
	"time"

	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/internal/secrets"
)

type secretList struct {
	Body struct {
		Secrets []secrets.Info `json:"secrets"`
	}
}

func (s *Server) listSecrets(ctx context.Context, _ *struct{}) (*secretList, error) {
	infos, err := s.opts.Secrets.List(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out := &secretList{}
	out.Body.Secrets = append([]secrets.Info{}, infos...)
	return out, nil
}

type putSecretInput struct {
	Name string `path:"name" doc:"In the form of an environment variable: A-Z, 0-9, _."`
	Body struct {
		Value string `json:"value" required:"true" writeOnly:"true"`
	}
}

func (s *Server) putSecret(ctx context.Context, in *putSecretInput) (*struct{}, error) {
	if !secrets.ValidName(in.Name) {
		return nil, fail(fieldError("name", "a secret's name has the form of an environment variable (A-Z, 0-9, _)"))
	}
	if err := s.opts.Secrets.Put(ctx, in.Name, in.Body.Value, actor(ctx)); err != nil {
		return nil, fail(err)
	}
	return nil, nil
}

func (s *Server) deleteSecret(ctx context.Context, in *struct {
	Name string `path:"name"`
}) (*struct{}, error) {
	found, err := s.opts.Secrets.Delete(ctx, in.Name)
	if err != nil {
		return nil, fail(err)
	}
	if !found {
		return nil, fail(notFound("no secret %q", in.Name))
	}
	return nil, nil
}

type tokenList struct {
	Body struct {
		Tokens []auth.Token `json:"tokens"`
	}
}

func (s *Server) listTokens(ctx context.Context, _ *struct{}) (*tokenList, error) {
	toks, err := s.opts.Tokens.List(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out := &tokenList{}
	out.Body.Tokens = append([]auth.Token{}, toks...)
	return out, nil
}

type createTokenInput struct {
	Body struct {
		Name    string `json:"name" required:"true" doc:"Who or what uses it."`
		Role    string `json:"role" required:"true" enum:"viewer,editor,admin"`
		Expires string `json:"expires,omitempty" doc:"How long it lasts, like 720h; never expires when absent."`
	}
}

type createdToken struct {
	Status int
	Body   struct {
		auth.Token
		Text string `json:"token" doc:"The token, shown this once: only its hash is kept."`
	}
}

func (s *Server) createToken(ctx context.Context, in *createTokenInput) (*createdToken, error) {
	var ttl time.Duration
	if in.Body.Expires != "" {
		d, err := time.ParseDuration(in.Body.Expires)
		if err != nil || d <= 0 {
			return nil, fail(fieldError("expires", "a duration like 720h"))
		}
		ttl = d
	}
	tok, text, err := s.opts.Tokens.Create(ctx, in.Body.Name, auth.Role(in.Body.Role), ttl)
	if err != nil {
		return nil, fail(err)
	}
	out := &createdToken{Status: 201}
	out.Body.Token, out.Body.Text = tok, text
	return out, nil
}

func (s *Server) revokeToken(ctx context.Context, in *struct {
	ID string `path:"id"`
}) (*struct{}, error) {
	found, err := s.opts.Tokens.Revoke(ctx, in.ID)
	if err != nil {
		return nil, fail(err)
	}
	if !found {
		return nil, fail(notFound("no active token %q", in.ID))
	}
	return nil, nil
}
