package glob

import "testing"

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"gpt-4o", "gpt-4o", true},
		{"gpt-4o", "gpt-4o-mini", false},
		{"gpt-4o*", "gpt-4o-mini", true},
		{"gpt-*", "claude-3", false},
		{"*", "", true},
		{"*", "meta-llama/Llama-3.1-8B", true},
		{"meta-llama/*", "meta-llama/Llama-3.1-8B", true},
		{"claude-*-4-*", "claude-sonnet-4-5", true},
		{"claude-*-4-*", "claude-sonnet-3-5", false},
		{"gpt-?o", "gpt-4o", true},
		{"gpt-?o", "gpt-4oo", false},
		{"", "", true},
		{"", "x", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"*", "*0", true}, // found by FuzzMatch: '*' was once taken as a literal
		{"*0", "*0", true},
		{"a*", "a*b", true},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestSpecificity(t *testing.T) {
	if !(Specificity("gpt-4o-mini") > Specificity("gpt-4o-mini*")) {
		t.Error("exact name must beat a pattern")
	}
	if !(Specificity("gpt-4o-mini*") > Specificity("gpt-4o*")) {
		t.Error("longer literal prefix must win")
	}
	if !(Specificity("gpt-4o*") > Specificity("*")) {
		t.Error("anything must beat a bare star")
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("a*b?c", "axxbyc")
	f.Add("*", "")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := Match(pattern, name)
		if pattern == name && !got {
			t.Fatalf("Match(%q, itself) = false", pattern)
		}
		if !Match("*", name) {
			t.Fatalf("* does not match %q", name)
		}
	})
}
