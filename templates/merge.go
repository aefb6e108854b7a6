package templates

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// entrySections are the mappings of ferry.yaml a template adds entries
// to, one by one.
func entrySections() []string { return []string{"connections", "groups", "scripts"} }

// wholeSections are the sections of ferry.yaml a template adds only when
// the project has none.
func wholeSections() []string { return []string{"warehouse", "alerts"} }

// checkProjectYAML checks a template's ferry.yaml: a mapping of the
// sections a template may add to.
func checkProjectYAML(b []byte) error {
	root, err := parseMapping(b)
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i].Value, root.Content[i+1]
		switch {
		case contains(entrySections(), key):
			if val.Kind != yaml.MappingNode {
				return fmt.Errorf("ferry.yaml: %s is a mapping of entries", key)
			}
		case contains(wholeSections(), key):
		default:
			return fmt.Errorf("ferry.yaml: a template adds %s and %s; not %s", strings.Join(entrySections(), ", "), strings.Join(wholeSections(), ", "), key)
		}
	}
	return nil
}

// ProjectEntry is what merging did with one entry of a template's ferry.yaml.
type ProjectEntry struct {
	// Key is "connections.erp", "groups.crm_to_erp", "warehouse" ….
	Key string `json:"key"`
	// Op is added, same (the project has it as the template has it),
	// replaced (force) or kept (the project's differs and was kept).
	Op string `json:"op"`
	// YAML is the template's entry, for one to compare or add by hand.
	YAML string `json:"yaml,omitempty"`
}

// ProjectEntry ops.
const (
	EntryAdded    = "added"
	EntrySame     = "same"
	EntryReplaced = "replaced"
	EntryKept     = "kept"
	// Said by a diff of a project's ferry.yaml.
	EntryMissing = "missing"
	EntryDiffers = "differs"
)

// mergeProjectYAML adds a template's ferry.yaml entries to a project's
// (nil: none yet). Entries the project lacks are added, with a comment
// naming the template; entries it has as the template has them are left
// alone; entries it has otherwise are kept (replaced with force). The rest
// of the file stays as written, comments included. It returns the new
// file, or nil when nothing changed.
func mergeProjectYAML(existing, fragment []byte, label string, force bool) ([]byte, []ProjectEntry, error) {
	frag, err := parseMapping(fragment)
	if err != nil {
		return nil, nil, fmt.Errorf("the template's ferry.yaml: %w", err)
	}
	if len(bytes.TrimSpace(existing)) == 0 {
		// A new project: the template's file as its author wrote it.
		var entries []ProjectEntry
		for i := 0; i+1 < len(frag.Content); i += 2 {
			key, val := frag.Content[i].Value, frag.Content[i+1]
			if contains(entrySections(), key) {
				for j := 0; j+1 < len(val.Content); j += 2 {
					entries = append(entries, ProjectEntry{Key: key + "." + val.Content[j].Value, Op: EntryAdded})
				}
				continue
			}
			entries = append(entries, ProjectEntry{Key: key, Op: EntryAdded})
		}
		return fragment, entries, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(existing, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("the project's ferry.yaml is not a YAML mapping, so the template's entries cannot be added to it: add them by hand:\n%s", fragment)
	}
	root := doc.Content[0]
	var entries []ProjectEntry
	changed := false
	for i := 0; i+1 < len(frag.Content); i += 2 {
		keyNode, val := frag.Content[i], frag.Content[i+1]
		key := keyNode.Value
		if contains(wholeSections(), key) {
			op, err := mergeEntry(root, keyNode, val, label, force)
			if err != nil {
				return nil, nil, err
			}
			changed = changed || op == EntryAdded || op == EntryReplaced
			entries = append(entries, ProjectEntry{Key: key, Op: op, YAML: yamlText(key, val)})
			continue
		}
		section := mappingValue(root, key)
		if section == nil || section.Kind != yaml.MappingNode || len(section.Content) == 0 {
			if section == nil {
				section = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, section)
			} else {
				// "groups:" with nothing under it is a null scalar.
				*section = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			}
		}
		for j := 0; j+1 < len(val.Content); j += 2 {
			op, err := mergeEntry(section, val.Content[j], val.Content[j+1], label, force)
			if err != nil {
				return nil, nil, err
			}
			changed = changed || op == EntryAdded || op == EntryReplaced
			name := val.Content[j].Value
			entries = append(entries, ProjectEntry{Key: key + "." + name, Op: op, YAML: yamlText(name, val.Content[j+1])})
		}
	}
	if !changed {
		return nil, entries, nil
	}
	out, err := encodeYAML(&doc)
	if err != nil {
		return nil, nil, fmt.Errorf("writing ferry.yaml: %w", err)
	}
	return out, entries, nil
}

// mergeEntry adds key: val to mapping m, or compares it with what m has.
func mergeEntry(m, key, val *yaml.Node, label string, force bool) (string, error) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key.Value {
			continue
		}
		same, err := sameValue(m.Content[i+1], val)
		if err != nil {
			return "", err
		}
		switch {
		case same:
			return EntrySame, nil
		case force:
			m.Content[i+1] = val
			return EntryReplaced, nil
		}
		return EntryKept, nil
	}
	k := *key
	k.HeadComment = strings.TrimSpace("# " + label + "\n" + key.HeadComment)
	m.Content = append(m.Content, &k, val)
	return EntryAdded, nil
}

// sameValue compares two YAML values as data, not as text.
func sameValue(a, b *yaml.Node) (bool, error) {
	var va, vb any
	if err := a.Decode(&va); err != nil {
		return false, fmt.Errorf("reading ferry.yaml: %w", err)
	}
	if err := b.Decode(&vb); err != nil {
		return false, fmt.Errorf("reading the template's ferry.yaml: %w", err)
	}
	return reflect.DeepEqual(va, vb), nil
}

func parseMapping(b []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("ferry.yaml is a mapping (connections:, groups: …)")
	}
	return doc.Content[0], nil
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func encodeYAML(node *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(node); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// yamlText is "key: value" as YAML, for people to read or copy.
func yamlText(key string, val *yaml.Node) string {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val}}
	b, err := encodeYAML(m)
	if err != nil {
		return ""
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
