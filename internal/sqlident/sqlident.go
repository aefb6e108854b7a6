// Package sqlident quotes the identifiers Ferry builds SQL with (tables,
// columns, link tables): user text never reaches SQL any other way.
package sqlident

import (
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// tablePattern is what a source.table may look like: schema.table or table.
var tablePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// IsTable reports whether name is a table name Ferry accepts (schema.table).
func IsTable(name string) bool { return tablePattern.MatchString(name) }

// Qualified quotes "schema.table" as two identifiers.
func Qualified(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

// Ident quotes one identifier.
func Ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// Literal quotes a string literal (for text Ferry builds itself, such as a
// table comment; values from users travel as parameters).
func Literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
