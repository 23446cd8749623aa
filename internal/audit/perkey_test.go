package audit

import (
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestKeyRulesReportEveryKeyInOrder: every key rule goes through perKey, so
// a key a rule skips (an admin key for keys.no_hard_budget) does not end the
// walk, every matching key is reported once, in the order the keys came, as a
// key subject whose title names it.
func TestKeyRulesReportEveryKeyInOrder(t *testing.T) {
	f := fixture()
	f.Keys = append(f.Keys,
		vkey.Key{ID: "k_admin", Kind: vkey.KindAdmin, PrincipalID: "prn_good", CreatedAt: now.Add(-day)},
		vkey.Key{ID: "k_z", Name: "zeta", Kind: vkey.KindVirtual, PrincipalID: "prn_svc", CreatedAt: now.Add(-day)},
		vkey.Key{ID: "k_scoped", Kind: vkey.KindVirtual, PrincipalID: "prn_svc", Scope: vkey.Scope{Models: []string{"gpt-4o"}}, CreatedAt: now.Add(-day)},
		vkey.Key{ID: "k_a", Kind: vkey.KindVirtual, PrincipalID: "prn_svc", CreatedAt: now.Add(-day)},
	)
	for rule, want := range map[string][]string{
		"keys.no_hard_budget": {"k_z", "k_scoped", "k_a"},
		"keys.unscoped":       {"k_z", "k_a"},
		"keys.no_expiry":      {"k_admin", "k_z", "k_scoped", "k_a"},
	} {
		var r Rule
		for _, x := range Rules() {
			if x.Name == rule {
				r = x
			}
		}
		var got []string
		for _, c := range r.Check(f, DefaultConfig()) {
			if c.Subject.Kind != "key" || !strings.Contains(c.Title, keyLabel(keyByID(f, c.Subject.ID))) {
				t.Errorf("%s: candidate %+v", rule, c)
			}
			got = append(got, c.Subject.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v (in key order)", rule, got, want)
		}
	}
}

func keyByID(f *Facts, id string) vkey.Key {
	for _, k := range f.Keys {
		if k.ID == id {
			return k
		}
	}
	return vkey.Key{ID: id}
}
