package configtx

import (
	"fmt"
	"sort"
	"strings"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
)

// rootGroup is the name of a channel configuration's root group.
const rootGroup = "Channel"

// maxDepth bounds the nesting of config groups read from outside bytes. Real
// configurations are four deep (/Channel/Application/Org1MSP); the policy
// manager refuses deeper than 32 as well.
const maxDepth = 32

// maxNameLength is Fabric's limit on config element names.
const maxNameLength = 249

type kind uint8

const (
	kindGroup kind = iota
	kindValue
	kindPolicy
)

func (k kind) String() string {
	switch k {
	case kindGroup:
		return "group"
	case kindValue:
		return "value"
	default:
		return "policy"
	}
}

// key names one config element: its kind and its path from the root,
// e.g. {kindValue, "/Channel/Orderer/BatchSize"}.
type key struct {
	kind kind
	path string
}

func (k key) String() string { return k.kind.String() + " " + k.path }

// element is one config element of a flattened configuration or update.
type element struct {
	key key
	// group is the path of the group holding a value or policy, or the group's
	// own path for a group: the base of a relative mod_policy.
	group     string
	version   uint64
	modPolicy string

	cg *cb.ConfigGroup
	cv *cb.ConfigValue
	cp *cb.ConfigPolicy
}

// configMap is a configuration tree flattened by element key.
type configMap map[key]*element

// flatten maps every element under root (the Channel group) by its path.
func flatten(root *cb.ConfigGroup) (configMap, error) {
	m := configMap{}
	if root == nil {
		return m, nil
	}
	if err := m.addGroup("/"+rootGroup, root, 0); err != nil {
		return nil, err
	}
	return m, nil
}

func (m configMap) addGroup(path string, g *cb.ConfigGroup, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("groups nested deeper than %d at %s", maxDepth, path)
	}
	m[key{kindGroup, path}] = &element{
		key: key{kindGroup, path}, group: path,
		version: g.GetVersion(), modPolicy: g.GetModPolicy(), cg: g,
	}
	for _, name := range sortedKeys(g.GetGroups()) {
		child := path + "/" + name
		if err := checkName(name); err != nil {
			return fmt.Errorf("group %s: %w", child, err)
		}
		cg := g.Groups[name]
		if cg == nil {
			return fmt.Errorf("group %s is nil", child)
		}
		if err := m.addGroup(child, cg, depth+1); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(g.GetValues()) {
		k := key{kindValue, path + "/" + name}
		if err := checkName(name); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		v := g.Values[name]
		if v == nil {
			return fmt.Errorf("%s is nil", k)
		}
		m[k] = &element{key: k, group: path, version: v.Version, modPolicy: v.ModPolicy, cv: v}
	}
	for _, name := range sortedKeys(g.GetPolicies()) {
		k := key{kindPolicy, path + "/" + name}
		if err := checkName(name); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		p := g.Policies[name]
		if p == nil {
			return fmt.Errorf("%s is nil", k)
		}
		m[k] = &element{key: k, group: path, version: p.Version, modPolicy: p.ModPolicy, cp: p}
	}
	return nil
}

// sorted returns the elements ordered by path, then kind, so that errors name
// the same element on every run.
func (m configMap) sorted() []*element {
	out := make([]*element, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].key.path != out[j].key.path {
			return out[i].key.path < out[j].key.path
		}
		return out[i].key.kind < out[j].key.kind
	})
	return out
}

// checkName enforces Fabric's rule for config element names: 1 to 249
// characters of ASCII letters, digits, '.' and '-', and not "." or "..".
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > maxNameLength {
		return fmt.Errorf("name longer than %d characters", maxNameLength)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("name %q is not allowed", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return fmt.Errorf("name %q has characters other than letters, digits, '.' and '-'", name)
		}
	}
	return nil
}

// checkModPolicy checks a mod_policy is set and a well-formed path.
func checkModPolicy(p string) error {
	if p == "" {
		return fmt.Errorf("mod_policy not set")
	}
	rel := strings.TrimPrefix(p, "/")
	for i, part := range strings.Split(rel, "/") {
		if err := checkName(part); err != nil {
			return fmt.Errorf("mod_policy %q: path element %d: %w", p, i, err)
		}
	}
	return nil
}

// modPolicyPath resolves an element's mod_policy to an absolute policy path:
// absolute paths stay, relative ones start at the element's group.
func modPolicyPath(e *element) string {
	if strings.HasPrefix(e.modPolicy, "/") {
		return e.modPolicy
	}
	return e.group + "/" + e.modPolicy
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
