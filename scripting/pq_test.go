package scripting

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConnectionWrites(t *testing.T) {
	t.Parallel()
	src := `
def transform(source_record, target_record, pq, target_id=None):
    crm = pq.connect("crm")
    company = crm.findone("companies", vat=source_record["vat"])
    if company == None:
        company_id = crm.add("companies", {"name": source_record["company"], "vat": source_record["vat"]})
    else:
        company_id = company["id"]
    crm.update("companies", company_id, {"last_seen": "today"})
    note = crm.upsert("notes", {"email": source_record["email"], "text": "hi"}, match=["email"])
    again = crm.upsert("notes", {"email": source_record["email"], "text": "hello"}, match=["email"])
    crm.delete("tasks", 3)
    target_record["company_id"] = company_id
    target_record["notes"] = [note, again]
    target_record["found"] = len(crm.find("notes", {"email": source_record["email"]}))
    return target_record
`
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			host := &MemoryHost{Records: map[string][]map[string]any{"crm/tasks": {{"id": "3"}}}}
			s := compile(t, "x.star", src, opts)
			out, err := s.Transform(context.Background(), TransformInput{SourceID: "1", Host: host,
				Source: map[string]any{"vat": "BE0123", "company": "Acme", "email": "a@acme.test"}})
			require.NoError(t, err)
			require.Equal(t, map[string]any{"company_id": "1", "notes": []any{"2", "2"}, "found": int64(1)}, out.Payload)
			require.Equal(t, []map[string]any{{"id": "1", "name": "Acme", "vat": "BE0123", "last_seen": "today"}}, host.Records["crm/companies"])
			require.Equal(t, []map[string]any{{"id": "2", "email": "a@acme.test", "text": "hello"}}, host.Records["crm/notes"])
			require.Empty(t, host.Records["crm/tasks"])
			var ops []WriteOp
			for _, w := range host.Writes {
				ops = append(ops, w.Op)
			}
			require.Equal(t, []WriteOp{OpAdd, OpUpdate, OpAdd, OpUpdate, OpDelete}, ops)
			// Each write forgot the connection's lookups, so every find asked
			// the target: findone, upsert's two finds, find.
			require.Equal(t, Stats{Finds: 4, Writes: 5}, s.Stats())
		})
	}
}

func TestLookupCache(t *testing.T) {
	t.Parallel()
	src := `
def transform(source_record, target_record, pq, target_id=None):
    company = pq.lookup("companies", vat=source_record["vat"])
    target_record["company_id"] = company["id"] if company else None
    target_record["parent"] = pq.link("companies", source_record["company_source_id"])
    return target_record
`
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			host := &MemoryHost{
				Records: map[string][]map[string]any{"companies": {{"id": "c1", "vat": "BE1"}}},
				Links:   map[string]map[string]string{"companies": {"10": "c1"}},
			}
			s := compile(t, "x.star", src, opts)
			var ins []TransformInput
			for _, vat := range []string{"BE1", "BE1", "BE2", "BE1", "BE2"} {
				ins = append(ins, TransformInput{SourceID: vat, Host: host, Source: map[string]any{"vat": vat, "company_source_id": int64(10)}})
			}
			for i, r := range s.TransformBatch(context.Background(), ins) {
				require.NoError(t, r.Err)
				want := map[string]any{"company_id": "c1", "parent": "c1"}
				if ins[i].Source["vat"] == "BE2" {
					want["company_id"] = nil
				}
				require.Equal(t, want, r.Output.Payload)
			}
			require.Equal(t, Stats{Finds: 2, FindHits: 3, Links: 1, LinkHits: 4}, s.Stats())

			// After the engine writes to its target, lookups ask again.
			s.ForgetLookups("")
			s.TransformBatch(context.Background(), ins[:1])
			require.Equal(t, int64(3), s.Stats().Finds)
		})
	}
}

// failingHost fails or panics in every call.
type failingHost struct {
	MemoryHost
	panics bool
}

var errTargetDown = errors.New("crm answered 503")

func (h *failingHost) Find(context.Context, string, string, map[string]any) ([]map[string]any, error) {
	if h.panics {
		panic("nil map in connector")
	}
	return nil, errTargetDown
}

func TestHostErrors(t *testing.T) {
	t.Parallel()
	src := `def transform(source_record, target_record, pq, target_id=None):
    pq.lookup("contacts", email="a")
    return target_record
`
	for iso, opts := range isolations(t) {
		t.Run(iso+"/error", func(t *testing.T) {
			s := compile(t, "x.star", src, opts)
			_, err := s.Transform(context.Background(), TransformInput{SourceID: "5", Host: &failingHost{}})
			var se *ScriptError
			require.ErrorAs(t, err, &se)
			require.Equal(t, KindHost, se.Kind)
			require.Equal(t, "x.star:2: pq.lookup: crm answered 503 (source id 5)", se.Error())
			if iso == "none" {
				require.ErrorIs(t, err, errTargetDown)
			}
		})
		t.Run(iso+"/panic", func(t *testing.T) {
			s := compile(t, "x.star", src, opts)
			_, err := s.Transform(context.Background(), TransformInput{SourceID: "5", Host: &failingHost{panics: true}})
			require.Error(t, err)
			require.Contains(t, err.Error(), "internal error: nil map in connector")
			require.Contains(t, err.Error(), "(source id 5)")
		})
	}
}

const customSync = `
def main(pq):
    state = pq.get_state() or {"last_id": 0}
    dw = pq.dbconnect("warehouse")
    rows = dw.fetch("SELECT id, email FROM contacts WHERE id > $1 ORDER BY id", params=[state["last_id"]])
    crm = pq.connect("crm")
    for row in rows:
        crm.upsert("contacts", {"email": row["email"]}, source_id=row["id"])
        state["last_id"] = row["id"]
    print("synced", len(rows), "contacts")
    pq.set_state(state)
`

func TestRunMain(t *testing.T) {
	t.Parallel()
	for iso, base := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			opts := base
			opts.Entry = EntryMain
			host := &MemoryHost{Rows: map[string][]map[string]any{
				"SELECT id, email FROM contacts WHERE id > $1 ORDER BY id": {
					{"id": int64(1), "email": "a@x.test"}, {"id": int64(2), "email": "b@x.test"},
				},
			}}
			s := compile(t, "contacts_sync.star", customSync, opts)
			printed, err := s.RunMain(context.Background(), host)
			require.NoError(t, err)
			require.Equal(t, []string{"synced 2 contacts"}, printed)
			require.Equal(t, []string{"synced 2 contacts"}, host.Logs)
			require.Equal(t, map[string]any{"last_id": int64(2)}, host.State)
			require.Len(t, host.Writes, 2)
			require.Equal(t, Write{Connection: "crm", Object: "contacts", Op: OpAdd, SourceID: "1", Record: map[string]any{"email": "a@x.test"}}, host.Writes[0])
		})
	}
}

func TestRunMainErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, src, want string }{
		{"missing main", "def mian(pq):\n    pass\n", "job.star: no main function: define def main(pq)"},
		{"runtime error", "def main(pq):\n    pq.update_id(1)\n", "job.star:2: pq.update_id: only a transform decides on a record; main(pq) writes with pq.connect(name)"},
		{"unknown database", "def main(pq):\n    pq.dbconnect(\"dw_123\")\n", `job.star:2: pq.dbconnect: unknown database "dw_123": Ferry reads only its warehouse (pq.dbconnect() or pq.dbconnect("warehouse"))`},
	}
	for iso, base := range isolations(t) {
		for _, tt := range tests {
			t.Run(iso+"/"+tt.name, func(t *testing.T) {
				opts := base
				opts.Entry = EntryMain
				s, err := Compile(context.Background(), "job.star", []byte(tt.src), opts)
				if err == nil {
					t.Cleanup(func() { _ = s.Close() })
					_, err = s.RunMain(context.Background(), &MemoryHost{})
				}
				require.Error(t, err)
				require.Equal(t, tt.want, err.Error())
			})
		}
	}
}
