package pricing

// usd converts dollars per million tokens, as providers publish them, to micros
// per million tokens. Inputs are exact decimal literals; the table below is
// checked by TestDefaults.
func usd(dollars float64) int64 { return int64(dollars*1_000_000 + 0.5) }

// Where the list prices were read, and when.
const (
	openAIPricing    = "https://developers.openai.com/api/docs/pricing"
	anthropicPricing = "https://platform.claude.com/docs/en/about-claude/pricing"
	checked          = "2026-11-30"
)

// openai is an OpenAI entry: input, cached input and output in dollars per
// million tokens. Models without a cache discount list cached = input.
func openai(model string, in, cached, out float64, maxOut int64, aliases ...string) Price {
	return Price{Model: model, Aliases: aliases, Input: usd(in), CachedInput: usd(cached), Output: usd(out), MaxOutput: maxOut,
		SourceURL: openAIPricing, Checked: checked}
}

// anthropic is an Anthropic entry: input, cache write, cache hit and output in
// dollars per million tokens. The cache-write price is the 1-hour one (2x
// input): usage does not say which TTL a write used, and a 5-minute write
// (1.25x input) charged at the 1-hour price is never less than billed.
func anthropic(model string, in, write1h, hit, out float64, maxOut int64, aliases ...string) Price {
	return Price{Model: model, Aliases: aliases, Input: usd(in), CacheWrite: usd(write1h), CachedInput: usd(hit), Output: usd(out), MaxOutput: maxOut,
		SourceURL: anthropicPricing, Checked: checked, Note: "cache writes at the 1-hour price"}
}

func (p Price) from(url string) Price { p.SourceURL = url; return p }

func (p Price) note(n string) Price {
	if p.Note != "" {
		n = p.Note + "; " + n
	}
	p.Note = n
	return p
}

func (p Price) long(above int64, in, write1h, hit, out float64) Price {
	p.LongContext = Tier{Above: above, Input: usd(in), CacheWrite: usd(write1h), CachedInput: usd(hit), Output: usd(out)}
	return p
}

// Defaults is the shipped price table: list prices per million tokens, USD,
// standard tier, by exact model id and dated snapshot. Every entry says where
// its price was read. Models absent here are unpriced on purpose, so a hard
// budget refuses them; among them the audio models (gpt-4o-audio-preview,
// gpt-realtime, gpt-audio), whose audio tokens cost many times their text
// tokens while usage parsing does not yet tell the two apart, and the
// deep-research models, whose server-side tool calls are billed apart.
// Operators add or override entries with `gatehouse prices set`.
func Defaults() []Price {
	return []Price{
		// OpenAI: GPT-5 family.
		openai("gpt-5", 1.25, 0.125, 10, 128000, "gpt-5-2025-08-07"),
		openai("gpt-5-chat-latest", 1.25, 0.125, 10, 16384),
		openai("gpt-5-codex", 1.25, 0.125, 10, 128000),
		openai("gpt-5-mini", 0.25, 0.025, 2, 128000, "gpt-5-mini-2025-08-07"),
		openai("gpt-5-nano", 0.05, 0.005, 0.40, 128000, "gpt-5-nano-2025-08-07"),
		openai("gpt-5-pro", 15, 15, 120, 272000, "gpt-5-pro-2025-10-06"),
		openai("gpt-5.1", 1.25, 0.125, 10, 128000, "gpt-5.1-2025-11-13"),
		openai("gpt-5.1-chat-latest", 1.25, 0.125, 10, 16384),
		openai("gpt-5.1-codex", 1.25, 0.125, 10, 128000),
		openai("gpt-5.1-codex-max", 1.25, 0.125, 10, 128000),
		openai("gpt-5.1-codex-mini", 0.25, 0.025, 2, 128000),
		openai("gpt-5.2", 1.75, 0.175, 14, 128000, "gpt-5.2-2025-12-11"),
		openai("gpt-5.2-chat-latest", 1.75, 0.175, 14, 16384),
		openai("gpt-5.2-codex", 1.75, 0.175, 14, 128000),
		openai("gpt-5.2-pro", 21, 21, 168, 128000, "gpt-5.2-pro-2025-12-11"),
		// GPT-5.4: prompts over 272K input tokens pay 2x input, 1.5x output for the whole request.
		openai("gpt-5.4", 2.50, 0.25, 15, 128000).long(272000, 5, 0, 0.50, 22.50).from("https://developers.openai.com/api/docs/models/gpt-5.4"),
		openai("gpt-5.4-pro", 30, 30, 180, 128000).long(272000, 60, 0, 60, 270).from("https://developers.openai.com/api/docs/models/gpt-5.4-pro"),
		// GPT-4.1 and GPT-4o.
		openai("gpt-4.1", 2, 0.50, 8, 32768, "gpt-4.1-2025-04-14"),
		openai("gpt-4.1-mini", 0.40, 0.10, 1.60, 32768, "gpt-4.1-mini-2025-04-14"),
		openai("gpt-4.1-nano", 0.10, 0.025, 0.40, 32768, "gpt-4.1-nano-2025-04-14"),
		openai("gpt-4o", 2.50, 1.25, 10, 16384, "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"),
		openai("gpt-4o-2024-05-13", 5, 5, 15, 4096),
		openai("chatgpt-4o-latest", 5, 5, 15, 16384),
		openai("gpt-4o-mini", 0.15, 0.075, 0.60, 16384, "gpt-4o-mini-2024-07-18"),
		// Reasoning models.
		openai("o1", 15, 7.50, 60, 100000, "o1-2024-12-17"),
		openai("o1-preview", 15, 7.50, 60, 32768, "o1-preview-2024-09-12"),
		openai("o1-mini", 1.10, 0.55, 4.40, 65536, "o1-mini-2024-09-12"),
		openai("o1-pro", 150, 150, 600, 100000, "o1-pro-2025-03-19"),
		openai("o3", 2, 0.50, 8, 100000, "o3-2025-04-16"),
		openai("o3-pro", 20, 20, 80, 100000, "o3-pro-2025-06-10"),
		openai("o3-mini", 1.10, 0.55, 4.40, 100000, "o3-mini-2025-01-31"),
		openai("o4-mini", 1.10, 0.275, 4.40, 100000, "o4-mini-2025-04-16"),
		// Older GPT-4 and GPT-3.5.
		openai("gpt-4.5-preview", 75, 37.50, 150, 16384, "gpt-4.5-preview-2025-02-27"),
		openai("gpt-4-turbo", 10, 10, 30, 4096, "gpt-4-turbo-2024-04-09", "gpt-4-turbo-preview", "gpt-4-0125-preview", "gpt-4-1106-preview"),
		openai("gpt-4", 30, 30, 60, 8192, "gpt-4-0613"),
		openai("gpt-4-32k", 60, 60, 120, 8192),
		openai("gpt-3.5-turbo", 0.50, 0.50, 1.50, 4096, "gpt-3.5-turbo-0125"),
		openai("gpt-3.5-turbo-1106", 1, 1, 2, 4096),
		openai("gpt-3.5-turbo-instruct", 1.50, 1.50, 2, 4096),
		// Embeddings.
		openai("text-embedding-3-small", 0.02, 0.02, 0, 0),
		openai("text-embedding-3-large", 0.13, 0.13, 0, 0),
		openai("text-embedding-ada-002", 0.10, 0.10, 0, 0),

		// Anthropic (model id, then the dated id or alias priced the same).
		anthropic("claude-opus-4-5", 5, 10, 0.50, 25, 64000, "claude-opus-4-5-20251101"),
		anthropic("claude-opus-4-1", 15, 30, 1.50, 75, 32000, "claude-opus-4-1-20250805"),
		anthropic("claude-opus-4-0", 15, 30, 1.50, 75, 32000, "claude-opus-4-20250514"),
		// Sonnet 4 and 4.5 with the 1M-context beta: over 200K input tokens,
		// $6 input / $22.50 output (and cache prices doubled) for the whole request.
		anthropic("claude-sonnet-4-5", 3, 6, 0.30, 15, 64000, "claude-sonnet-4-5-20250929").long(200000, 6, 12, 0.60, 22.50),
		anthropic("claude-sonnet-4-0", 3, 6, 0.30, 15, 64000, "claude-sonnet-4-20250514").long(200000, 6, 12, 0.60, 22.50),
		anthropic("claude-haiku-4-5", 1, 2, 0.10, 5, 64000, "claude-haiku-4-5-20251001"),
		// The 4.6 models have had one price across their 1M window since 2026-03-13.
		anthropic("claude-opus-4-6", 5, 10, 0.50, 25, 128000).from("https://platform.claude.com/docs/en/models/opus-4-6/overview").note("flat across the 1M window"),
		anthropic("claude-sonnet-4-6", 3, 6, 0.30, 15, 128000).from("https://platform.claude.com/docs/en/models/sonnet-4-6/overview").note("flat across the 1M window"),
		anthropic("claude-opus-4-7", 5, 10, 0.50, 25, 128000),
		anthropic("claude-opus-4-8", 5, 10, 0.50, 25, 128000),
		anthropic("claude-opus-5", 5, 10, 0.50, 25, 128000).from("https://platform.claude.com/docs/about-claude/models/whats-new-opus-5"),
		anthropic("claude-sonnet-5", 2, 4, 0.20, 10, 128000).from("https://platform.claude.com/docs/en/models/sonnet-5/overview"),
		anthropic("claude-fable-5", 10, 20, 1, 50, 128000),
		anthropic("claude-mythos-5", 10, 20, 1, 50, 128000),
		anthropic("claude-fable-5-1", 10, 20, 0.25, 50, 128000),
		anthropic("claude-mythos-5-1", 10, 20, 0.25, 50, 128000),
		// Listed at $4/$20 and $2/$10; their cache prices were not on the page
		// read, so they are set at the usual multiples (2x input for a 1-hour
		// write, 0.1x for a hit), which is no lower than any published since.
		anthropic("claude-opus-5-5", 4, 8, 0.40, 20, 128000).note("cache prices at the usual multiples, not read"),
		anthropic("claude-sonnet-5-5", 2, 4, 0.20, 10, 128000).note("cache prices at the usual multiples, not read"),
		// Haiku 5.5 is priced by prompt length: over 100K input tokens, 5x.
		anthropic("claude-haiku-5-5", 0.10, 0.20, 0.01, 0.50, 128000).long(100000, 0.50, 1, 0.05, 2.50).
			note("the 100K tier as summarised in third-party release notes; the model page lists from $0.10 / $0.50"),
		anthropic("claude-3-7-sonnet-latest", 3, 6, 0.30, 15, 64000, "claude-3-7-sonnet-20250219"),
		anthropic("claude-3-5-sonnet-latest", 3, 6, 0.30, 15, 8192, "claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20240620"),
		anthropic("claude-3-5-haiku-latest", 0.80, 1.60, 0.08, 4, 8192, "claude-3-5-haiku-20241022"),
		anthropic("claude-3-opus-latest", 15, 30, 1.50, 75, 4096, "claude-3-opus-20240229"),
		anthropic("claude-3-haiku-20240307", 0.25, 0.50, 0.03, 1.25, 4096),

		// The built-in simulated provider's own models.
		{Model: "sim-small", Input: usd(1), CachedInput: usd(0.10), Output: usd(4), MaxOutput: 4096, Note: "the simulated provider"},
		{Model: "sim-large", Input: usd(1), CachedInput: usd(0.10), Output: usd(4), MaxOutput: 4096, Note: "the simulated provider"},
	}
}
