// Package glob matches model names against patterns in which '*' stands for any
// run of characters (slashes included, since model names such as
// "meta-llama/Llama-3.1-8B" contain them) and '?' for one character. Matching is
// case-sensitive, as provider model names are.
package glob

import "strings"

// Match reports whether name matches pattern.
func Match(pattern, name string) bool {
	// Iterative matcher with single-star backtracking: linear in practice and
	// never exponential, whatever the pattern.
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*': // before the literal case: '*' never matches itself literally
			star, mark = p, n
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == name[n]):
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchAny reports whether name matches any of patterns. An empty list matches
// nothing; callers decide what "no patterns" means.
func MatchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if Match(p, name) {
			return true
		}
	}
	return false
}

// Specificity orders patterns so that the most specific wins: fewer wildcards
// first, then more literal characters. An exact name beats any pattern.
func Specificity(pattern string) int {
	wild := strings.Count(pattern, "*") + strings.Count(pattern, "?")
	return (len(pattern)-wild)*16 - wild*1024
}
