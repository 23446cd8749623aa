package provider

import "testing"

// The usage parsers on the hot path: a complete chat response, and one
// stream chunk of text and the final usage chunk. docs/benchmarks.md has
// numbers.
func BenchmarkParseUsageChat(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1764500000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"A transparency log is an append-only, publicly verifiable record.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":12,"total_tokens":31,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"system_fingerprint":"fp_1"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := ParseUsage(Chat, body); !ok {
			b.Fatal("no usage")
		}
	}
}

func BenchmarkMeterChatChunks(b *testing.B) {
	text := Event{Data: []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764500000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" verifiable"},"logprobs":null,"finish_reason":null}]}`)}
	final := Event{Data: []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764500000,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":12,"total_tokens":31}}`)}
	b.ReportAllocs()
	for b.Loop() {
		m := NewMeter(Chat)
		m.Observe(text)
		m.Observe(final)
	}
}

// BenchmarkMeterAnthropicStream: one short Anthropic stream, every event
// read (no byte pre-filter since the escaped-name fix).
func BenchmarkMeterAnthropicStream(b *testing.B) {
	evs := []Event{
		{Data: []byte(`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}`)},
		{Data: []byte(`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)},
		{Data: []byte(`{"type":"ping"}`)},
		{Data: []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"A transparency"}}`)},
		{Data: []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" log is"}}`)},
		{Data: []byte(`{"type":"content_block_stop","index":0}`)},
		{Data: []byte(`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}`)},
		{Data: []byte(`{"type":"message_stop"}`)},
	}
	b.ReportAllocs()
	for b.Loop() {
		m := NewMeter(Messages)
		for _, ev := range evs {
			m.Observe(ev)
		}
	}
}
