// Package jsonx is Ferry's hand-written JSON: the encoder of request bodies,
// replies and record hashes, and the scanners that read an id out of an
// insert response or decode a request body. It exists because these are
// per-record hot paths (a request body and its response per change, a hash
// and a link-table payload per record, a request and a reply per call in the
// test server), and encoding/json's reflection was a large share of the CPU
// in the benchmarks: it reflects over every map, sorts the keys through
// reflection, and decodes a whole response only to read its id.
//
// The one thing to know: every function here gives what encoding/json would
// give, or says that it cannot (ok is false) so that the caller falls back to
// encoding/json, which then also words any error. Nothing here is a JSON
// dialect of its own; the tests compare each function with encoding/json on
// tables, random strings and fuzzed input.
//
//   - Append, AppendString: what a json.Encoder with SetEscapeHTML(false)
//     writes, without the newline. Encode adds that fallback; AppendFunc
//     lets the caller write the values Append refuses, one by one.
//   - FindPath: the id at a dot path in a response, as decoding with
//     UseNumber and following the path finds it.
//   - DecodeObject: a body's object as a json.Decoder with UseNumber decodes
//     it into a map[string]any.
package jsonx
