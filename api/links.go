package api

import (
	"context"

	"github.com/ferry-sync/ferry/engine"
)

type listLinksInput struct {
	Name       string `path:"name"`
	Status     string `query:"status" enum:"success,error,skipped,matched,pending"`
	ErrorClass string `query:"error_class" doc:"rejected, dependency, invalid, script, pending, retryable …"`
	After      string `query:"after" doc:"The cursor: the last source id of the previous page."`
	Limit      int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

type linkList struct {
	Body struct {
		Links []engine.LinkRow `json:"links"`
		Next  string           `json:"next,omitempty" doc:"The cursor of the next page (after=…), absent on the last."`
	}
}

// listLinks pages through a link table by source id (keyset: a page costs
// the same at the millionth row as at the first).
func (s *Server) listLinks(ctx context.Context, in *listLinksInput) (*linkList, error) {
	limit := in.Limit
	if limit == 0 {
		limit = 100
	}
	rows, next, err := s.opts.Engine.Links(ctx, in.Name, engine.LinkFilter{Status: engine.LinkStatus(in.Status), ErrorClass: in.ErrorClass}, in.After, limit)
	if err != nil {
		return nil, fail(err)
	}
	out := &linkList{}
	out.Body.Links, out.Body.Next = append([]engine.LinkRow{}, rows...), next
	return out, nil
}

type linkInput struct {
	Name string `path:"name"`
	ID   string `path:"id" doc:"The source id."`
}

type linkOut struct{ Body *engine.LinkHistory }

func (s *Server) getLink(ctx context.Context, in *linkInput) (*linkOut, error) {
	h, err := s.opts.Engine.LinkHistory(ctx, in.Name, in.ID)
	if err != nil {
		return nil, fail(err)
	}
	return &linkOut{Body: h}, nil
}
