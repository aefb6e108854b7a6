// Package engine runs syncs: it loads sync definitions from a project folder,
// reads a sync's scope query incrementally from the warehouse, maps fields,
// resolves parent relations through the parents' link tables, skips records
// whose hash has not changed, writes the rest through a connector.Target and
// records every outcome in the sync's link table (link_tables.<sync>) and in
// ferry.runs.
//
// The one thing to know: a record's link row is the truth about it. The
// bookmark only says where reading may start; records in error or pending are
// found through their link rows and retried whatever the bookmark says.
package engine
