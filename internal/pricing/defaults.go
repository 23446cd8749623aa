package pricing

// usd converts dollars per million tokens, as providers publish them, to micros
// per million tokens. Inputs are exact decimal literals; the table below is
// checked by TestDefaults.
func usd(dollars float64) int64 { return int64(dollars*1_000_000 + 0.5) }

// Defaults is the shipped price table (list prices per million tokens, USD, as
// published by OpenAI and Anthropic in 2025-2026). Operators override entries
// with `gatehouse prices set`; unknown models cost 0 and are flagged unpriced.
// Anthropic cache writes are priced at 1.25x input (5-minute cache).
func Defaults() []Price {
	return []Price{
		// OpenAI
		{Model: "gpt-5*", Input: usd(1.25), CachedInput: usd(0.125), Output: usd(10), MaxOutput: 128000},
		{Model: "gpt-5-mini*", Input: usd(0.25), CachedInput: usd(0.025), Output: usd(2), MaxOutput: 128000},
		{Model: "gpt-5-nano*", Input: usd(0.05), CachedInput: usd(0.005), Output: usd(0.40), MaxOutput: 128000},
		{Model: "gpt-4.1*", Input: usd(2), CachedInput: usd(0.50), Output: usd(8), MaxOutput: 32768},
		{Model: "gpt-4.1-mini*", Input: usd(0.40), CachedInput: usd(0.10), Output: usd(1.60), MaxOutput: 32768},
		{Model: "gpt-4.1-nano*", Input: usd(0.10), CachedInput: usd(0.025), Output: usd(0.40), MaxOutput: 32768},
		{Model: "gpt-4o*", Input: usd(2.50), CachedInput: usd(1.25), Output: usd(10), MaxOutput: 16384},
		{Model: "gpt-4o-mini*", Input: usd(0.15), CachedInput: usd(0.075), Output: usd(0.60), MaxOutput: 16384},
		{Model: "o1*", Input: usd(15), CachedInput: usd(7.50), Output: usd(60), MaxOutput: 100000},
		{Model: "o3*", Input: usd(2), CachedInput: usd(0.50), Output: usd(8), MaxOutput: 100000},
		{Model: "o3-mini*", Input: usd(1.10), CachedInput: usd(0.55), Output: usd(4.40), MaxOutput: 100000},
		{Model: "o4-mini*", Input: usd(1.10), CachedInput: usd(0.275), Output: usd(4.40), MaxOutput: 100000},
		{Model: "gpt-3.5-turbo*", Input: usd(0.50), Output: usd(1.50), MaxOutput: 4096},
		{Model: "text-embedding-3-small", Input: usd(0.02)},
		{Model: "text-embedding-3-large", Input: usd(0.13)},
		{Model: "text-embedding-ada-002", Input: usd(0.10)},
		// Anthropic
		{Model: "claude-opus-4-5*", Input: usd(5), CachedInput: usd(0.50), CacheWrite: usd(6.25), Output: usd(25), MaxOutput: 64000},
		{Model: "claude-opus-4*", Input: usd(15), CachedInput: usd(1.50), CacheWrite: usd(18.75), Output: usd(75), MaxOutput: 32000},
		{Model: "claude-sonnet-4*", Input: usd(3), CachedInput: usd(0.30), CacheWrite: usd(3.75), Output: usd(15), MaxOutput: 64000},
		{Model: "claude-3-7-sonnet*", Input: usd(3), CachedInput: usd(0.30), CacheWrite: usd(3.75), Output: usd(15), MaxOutput: 64000},
		{Model: "claude-3-5-sonnet*", Input: usd(3), CachedInput: usd(0.30), CacheWrite: usd(3.75), Output: usd(15), MaxOutput: 8192},
		{Model: "claude-haiku-4*", Input: usd(1), CachedInput: usd(0.10), CacheWrite: usd(1.25), Output: usd(5), MaxOutput: 64000},
		{Model: "claude-3-5-haiku*", Input: usd(0.80), CachedInput: usd(0.08), CacheWrite: usd(1), Output: usd(4), MaxOutput: 8192},
		{Model: "claude-3-haiku*", Input: usd(0.25), CachedInput: usd(0.03), CacheWrite: usd(0.30), Output: usd(1.25), MaxOutput: 4096},
		// The built-in simulated provider's own models.
		{Model: "sim-*", Input: usd(1), CachedInput: usd(0.10), Output: usd(4), MaxOutput: 4096},
	}
}
