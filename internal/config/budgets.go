package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Budgets configures what a key under a hard budget may send beyond the
// request fields and Anthropic betas the gateway knows (proxy/fields.go):
// every other top-level field and every other beta is refused under a hard
// budget, since the gateway did not price it.
type Budgets struct {
	// AllowFields lists extra top-level request fields per endpoint, keyed
	// "openai.chat", "openai.completions", "openai.embeddings",
	// "openai.responses" or "anthropic.messages" (e.g. a vLLM server's
	// "top_k" on openai.chat). An allowed field is passed on unread: allow
	// only fields that cannot change what a call costs.
	AllowFields map[string][]string `yaml:"allow_fields"`
	// AllowBetas lists extra anthropic-beta values (header or betas field).
	AllowBetas []string `yaml:"allow_betas"`
	// AllowVersions lists extra anthropic-version values.
	AllowVersions []string `yaml:"allow_versions"`
}

// FieldEndpoints are the keys budgets.allow_fields takes.
var FieldEndpoints = []string{"openai.chat", "openai.completions", "openai.embeddings", "openai.responses", "anthropic.messages"}

func (b Budgets) validate() error {
	keys := make([]string, 0, len(b.AllowFields))
	for k := range b.AllowFields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(FieldEndpoints, k) {
			return fmt.Errorf("budgets.allow_fields: unknown endpoint %q (want one of %s)", k, strings.Join(FieldEndpoints, ", "))
		}
		for _, f := range b.AllowFields[k] {
			if f == "" {
				return fmt.Errorf("budgets.allow_fields.%s: empty field name", k)
			}
		}
	}
	for _, v := range b.AllowBetas {
		if strings.TrimSpace(v) != v || v == "" || strings.Contains(v, ",") {
			return fmt.Errorf("budgets.allow_betas: %q is not a beta name", v)
		}
	}
	for _, v := range b.AllowVersions {
		if strings.TrimSpace(v) != v || v == "" {
			return fmt.Errorf("budgets.allow_versions: %q is not a version", v)
		}
	}
	return nil
}
