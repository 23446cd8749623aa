package provider

// CountTokens is Anthropic's token counting (POST /v1/messages/count_tokens):
// free, no output, no stream. Key scopes and policies see it as "messages"
// (it is part of the Messages API); records name it "count_tokens".
var CountTokens = Endpoint{Name: "count_tokens", Protocol: TypeAnthropic, Path: "/v1/messages/count_tokens"}
