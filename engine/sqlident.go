package engine

import (
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

var tablePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// quoteQualified quotes "schema.table" as two identifiers.
func quoteQualified(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

func quoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }
