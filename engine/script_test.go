package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
)

func TestDataSyncScriptKeepsStateAndNeverWritesTwice(t *testing.T) {
	t.Parallel()
	b := setupScript(t, companiesSync())
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (1, 'Acme'), (2, 'Globex')`)
	src := []byte(`
def main(pq):
    state = pq.get_state() or {"runs": 0}
    rows = pq.dbconnect("warehouse").fetch("SELECT id, name FROM crm.companies WHERE id > $1 ORDER BY id", params=[0])
    erp = pq.connect("erp")
    for r in rows:
        erp.add("partners", {"name": r["name"]}, source_id=r["id"])
    state["runs"] += 1
    pq.set_state(state)
    print("run", state["runs"], "wrote", len(rows))
`)
	printed, err := b.eng.RunScript(context.Background(), "copy_companies", "copy_companies.star", src, "", engine.Origin{})
	require.NoError(t, err)
	assert.Equal(t, []string{"run 1 wrote 2"}, printed)
	require.Len(t, b.target.Records("partners"), 2)

	b.exec(`UPDATE crm.companies SET name = 'Acme 2' WHERE id = 1`)
	printed, err = b.eng.RunScript(context.Background(), "copy_companies", "copy_companies.star", src, "", engine.Origin{})
	require.NoError(t, err)
	assert.Equal(t, []string{"run 2 wrote 2"}, printed, "the state survived between runs")
	partners := b.target.Records("partners")
	assert.Len(t, partners, 2, "a rerun updates what the first run added: never twice")
	var names []string
	for _, p := range partners {
		names = append(names, p["name"].(string))
	}
	assert.ElementsMatch(t, []string{"Acme 2", "Globex"}, names)
	links := b.links("script_copy_companies_partners")
	assert.Len(t, links, 2)
	for _, l := range links {
		assert.True(t, strings.HasPrefix(l, "success:"))
	}
}

func TestDataSyncScriptErrors(t *testing.T) {
	t.Parallel()
	b := setupScript(t, companiesSync())
	_, err := b.eng.RunScript(context.Background(), "bad", "bad.star", []byte("def main(pq):\n    pq.dbconnect('warehouse').fetch('DELETE FROM crm.companies')\n"), "", engine.Origin{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad.star:2")
	assert.Contains(t, err.Error(), "read-only transaction")

	_, err = b.eng.RunScript(context.Background(), "nomain", "nomain.star", []byte("x = 1\n"), "", engine.Origin{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "main")
}

func TestTransformInfiniteLoopFailsItsRecordOnly(t *testing.T) {
	t.Parallel()
	s := transformSync(`
def transform(source_record, target_record, pq, target_id=None):
    if source_record["id"] == 2:
        n = 0
        for i in range(1 << 40):
            n += i
    return target_record
`)
	b := setupScript(t, s)
	b.exec(`INSERT INTO crm.companies (id, name) SELECT g, 'C' || g FROM generate_series(1, 3) g`)
	res, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(2), res.Counts.Inserted)
	assert.Equal(t, int64(1), res.Counts.Failed)
	msg := b.linkError("companies", "2")
	assert.Contains(t, msg, "companies.star")
	assert.Contains(t, msg, "source id 2")
	assert.Regexp(t, "step|time", msg)
}

// pq.link reads another sync's real link table: a transform finds the
// parent's target id itself (here for a field a relation cannot fill).
func TestTransformLinkReadsAnotherSyncsLinkTable(t *testing.T) {
	t.Parallel()
	contacts := contactsSync()
	contacts.Relations = nil
	contacts.Transform = "contacts.star"
	contacts.TransformSource = []byte(`
def transform(source_record, target_record, pq, target_id=None):
    target_record["company_ref"] = pq.link("companies", source_record["company_id"])
    target_record["nowhere"] = pq.link("companies", 999)
    return target_record
`)
	b := setupScript(t, companiesSync(), contacts)
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (100, 'Acme')`)
	b.exec(`INSERT INTO crm.contacts (id, name, email, company_id) VALUES (1, 'Ann', 'a@x', 100)`)
	b.run("companies")
	acme := strings.TrimPrefix(b.links("companies")["100"], "success:")
	res := b.run("contacts")
	require.Equal(t, int64(1), res.Counts.Inserted, b.linkError("contacts", "1"))
	for _, p := range b.target.Records("people") {
		assert.Equal(t, acme, p["company_ref"])
		assert.Nil(t, p["nowhere"], "a source id with no link row gives None")
	}
}
