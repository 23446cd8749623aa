package e2e

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
)

func TestZZTmpFields(t *testing.T) {
	for name, v := range map[string]any{
		"chat": openai.ChatCompletionNewParams{}, "completions": openai.CompletionNewParams{}, "embeddings": openai.EmbeddingNewParams{},
		"responses": responses.ResponseNewParams{}, "messages": anthropic.MessageNewParams{}, "betamessages": anthropic.BetaMessageNewParams{},
		"count": anthropic.MessageCountTokensParams{},
	} {
		ty := reflect.TypeOf(v)
		var fs []string
		for i := 0; i < ty.NumField(); i++ {
			tag := ty.Field(i).Tag.Get("json")
			fs = append(fs, strings.Split(tag, ",")[0]+"("+ty.Field(i).Name+")")
		}
		fmt.Println(name, fs)
	}
}
