// Package scripting owns Ferry's Starlark sandbox: compiling a sync's
// transform script or a standalone data-sync script, calling it per record
// under limits, the pq module scripts reach the world through, the
// conversion of values between the engine and Starlark, and the worker
// processes that keep a runaway script from taking Ferry down. It knows
// nothing of SQL drivers or HTTP: the engine implements Host.
//
// The one thing to know: compile once per run (Compile), call per record
// (Script.Transform, or Script.TransformBatch for a page), and let process
// isolation (the default) run the calls in a worker process that has an OS
// memory limit. A record whose script fails, loops, times out or exhausts
// memory gets a *ScriptError naming script, line and source id; the other
// records carry on.
//
// # Scripts
//
// A transform is
//
//	def transform(source_record, target_record, pq, target_id=None):
//	    target_record["address"] = {"street": source_record["street"], "city": source_record["city"]}
//	    if target_id:
//	        target_record["id"] = target_id
//	    return target_record          # None skips the record
//
// source_record is read-only (assigning fails with a clear error; copy it
// with dict(source_record)); target_record is the mapped record, a dict the
// script may change and return. Returning None or calling pq.skip(reason)
// skips the record. A standalone script defines def main(pq).
//
// The dialect is Starlark with while loops, top-level if/for, sets,
// recursion and reassignable globals. Globals are frozen once the
// top-level code has run, so no state leaks from one record to the next.
// Each call is bounded by Options.MaxSteps (default 1e6 for a transform)
// and Options.Timeout (default 5s), and stops when its context is
// cancelled. Steps do not bound memory ("x" * (1 << 32) is one step): only
// IsolationProcess does, by running calls in a worker whose data segment is
// limited (RLIMIT_DATA, default 256 MB).
//
// load() accepts Ferry's modules by name (load("re", "sub")) and .star
// files of the project folder by project-relative path
// (load("lib/phone.star", "normalize")); nothing else, and no path leaving
// the folder. Loaded files are read once at Compile; workers never read
// files.
//
// Check finds what Compile would refuse statically (syntax, undefined
// names, refused or missing loads, a missing or mis-shaped entry def)
// without running any of the script, so loading a project can refuse a
// broken script without running its top-level code in Ferry's own process.
//
// # Predeclared names
//
//	json      encode, decode, indent, encode_indent (go.starlark.net/lib/json)
//	time      now, time, parse_time, parse_duration, from_timestamp, ... (go.starlark.net/lib/time; Go layouts)
//	math      floor, ceil, round, sqrt, pow, log, ... (go.starlark.net/lib/math)
//	re        match, fullmatch, search -> None or a match (.text, .groups, .named, .start, .end, .group(n));
//	          findall, sub (Python's \1 and \g<name>), split, escape. Go RE2 syntax: linear time, no backreferences.
//	strings   pad_left(s, width, fill=" "), pad_right, zfill(s, width), truncate(s, n, suffix=""),
//	          squash(s), ascii(s) (drops accents), slug(s), digits(s), is_blank(x), coalesce(*xs)
//	decimal   decimal(x): an exact decimal from a string or an int
//	struct    struct(**fields)
//
// Nothing reaches files, the network or the environment; time.now() reads
// the clock.
//
// # Values
//
// Engine values map to Starlark and back as follows. Conversions return
// errors naming the key (source_record["j"]["c"]: unsupported Go type
// chan int), never panic; cycles and nesting deeper than 64 levels are
// errors.
//
//	engine (Go)                      Starlark                  back to the engine
//	nil                              None                      nil
//	bool                             bool                      bool
//	int, int8..int64, uint..uint64   int                       int64; an int beyond int64 -> json.Number (exact digits)
//	float32, float64                 float                     float64
//	json.Number (numeric columns)    decimal                   json.Number, the same digits when untouched
//	string (text, uuid, enum)        string                    string
//	[]byte (bytea)                   bytes                     []byte
//	time.Time (timestamp[tz], date)  time.time                 time.Time (instant and offset kept)
//	time.Duration (interval)         time.duration             time.Duration
//	map[string]any (json, jsonb)     dict                      map[string]any
//	[]any, []T (arrays)              list                      []any
//	map[string]T                     dict                      map[string]any
//	                                 tuple, set                []any
//	                                 struct                    map[string]any
//
// A decimal keeps the literal it came from: 12345678901234567890.123456789
// reaches the target unchanged. It compares with decimals, does exact +, -
// and * with decimals and ints (a float operand or / gives a float), and
// has .float(), .int() and .round(n); json.encode writes its digits.
// Reading a json column gives a fresh dict the script may change; the
// source record itself never changes.
//
// # The pq module
//
// People who know the vendor's pq object find its names:
//
//	pq.connect(name) -> connection:
//	    .add(object, record, source_id=None) -> id
//	    .update(object, id, record, source_id=None) -> id
//	    .upsert(object, record, match=["email"], source_id=None) -> id
//	        (updates the record found by the match fields, or record["id"], else adds)
//	    .delete(object, id)
//	    .findone(object, {"field": value} or field=value, ...) -> dict or None
//	    .find(object, ...) -> list of dicts (each with its "id")
//	pq.dbconnect(name="warehouse") -> .fetch(sql, params=[...]) -> list of dicts
//	pq.get_state() / pq.set_state(value)     state kept between runs (standalone scripts)
//
// and Ferry's own:
//
//	pq.query(sql, params=[...])              pq.dbconnect().fetch
//	pq.lookup([object], field=value, ...)    first match in the sync's own target, or None
//	pq.link(sync, source_id)                 that sync's target id for source_id, or None
//	pq.update_id(id)                         update target record id and link it (lookup before upsert)
//	pq.insert()                              insert even though the record is linked
//	pq.skip(reason)                          skip, with the reason in the link row; returns None
//	pq.log(*args)                            a line in the run's log, like print()
//	pq.source_id                             the record's source id
//
// Lookup before upsert reads:
//
//	def transform(source_record, target_record, pq, target_id=None):
//	    if not target_id:
//	        existing = pq.lookup("contacts", email=source_record["email"])
//	        if existing:
//	            pq.update_id(existing["id"])   # Ferry updates it and remembers the match
//	    return target_record
//
// Lookups (Find) and link look-ups are cached for the Script's life (one
// run) and counted (Script.Stats); a write through pq forgets its
// connection's cached lookups, and the engine calls Script.ForgetLookups
// after its own writes. Writes with a source_id are keyed in the script's
// link table by the engine, so a rerun never writes twice.
//
// # Isolation
//
// IsolationProcess runs calls in worker processes (Pool): the ferry binary
// re-executed under the hidden subcommand WorkerCommand, which calls
// ServeWorker. A page of records travels in one message and its results in
// one write; pq calls go back to the parent, which alone holds the Host.
// When a worker dies (out of memory, a crash), the record it was running
// gets the error, the worker is replaced and the rest of the page goes on;
// if the parent cannot tell which record it was, it re-runs the unanswered
// records with one write per result, which tells. IsolationNone runs calls
// in the caller's process, for tests and for operators who opt out.
//
// # Tests of scripts
//
// RunTests runs *_test.star files: test_* functions that call a transform
// through run_transform (a fake pq over fixture records, no target, no
// warehouse) and check it with assert.eq and friends.
package scripting
