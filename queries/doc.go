// Package queries owns Ferry's state schema in PostgreSQL: the embedded
// migrations, the sqlc query files and the Go that sqlc generates from them.
// Link tables are not here: their names are per sync, so package engine
// builds their SQL with quoted identifiers.
package queries
