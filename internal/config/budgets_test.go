package config

import (
	"slices"
	"strings"
	"testing"
)

// TestBudgetsAllowLists: budgets.allow_fields (per endpoint) and
// budgets.allow_betas are read from the file; an unknown endpoint key or a
// value that is not one beta name is refused, naming the key.
func TestBudgetsAllowLists(t *testing.T) {
	c := Default()
	if err := c.Parse([]byte("budgets:\n  allow_fields:\n    openai.chat: [top_k, repetition_penalty]\n    anthropic.messages: [x_trace]\n  allow_betas: [managed-agents-2026-04-01]\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Budgets.AllowFields["openai.chat"], []string{"top_k", "repetition_penalty"}) || !slices.Equal(c.Budgets.AllowBetas, []string{"managed-agents-2026-04-01"}) {
		t.Fatalf("read %+v", c.Budgets)
	}
	for _, bad := range []string{
		"budgets:\n  allow_fields:\n    openai.chats: [top_k]\n",
		"budgets:\n  allow_fields:\n    openai.chat: ['']\n",
		"budgets:\n  allow_betas: ['a,b']\n",
		"budgets:\n  allow_betas: [' a']\n",
		"budgets:\n  allow_versions: ['']\n",
	} {
		c := Default()
		if err := c.Parse([]byte(bad)); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "budgets.allow_") {
			t.Errorf("%q: Validate = %v, want a refusal naming the key", bad, err)
		}
	}
}
