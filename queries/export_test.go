package queries

// MigrateWith lets the external tests run Migrate with an edited or shorter
// list of migrations, to play a database migrated by another binary.
var MigrateWith = migrate
