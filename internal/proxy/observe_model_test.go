package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

type outcomeSink struct{ got Outcome }

func (s *outcomeSink) Phase(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}
func (s *outcomeSink) Inject(context.Context, http.Header)               {}
func (s *outcomeSink) End(_ context.Context, _ *usage.Record, o Outcome) { s.got = o }

// The model an upstream names reaches the observer (gen_ai.response.model),
// unless it is too long or not text: a hostile upstream cannot fill spans.
func TestObservedResponseModel(t *testing.T) {
	for in, want := range map[string]string{
		"gpt-4o-2024-08-06":                     "gpt-4o-2024-08-06",
		"":                                      "",
		strings.Repeat("m", maxResponseModel):   strings.Repeat("m", maxResponseModel),
		strings.Repeat("m", maxResponseModel+1): "",
		"bad\xff":                               "",
	} {
		sink := &outcomeSink{}
		o := &observation{co: sink, start: time.Unix(0, 0), now: func() time.Time { return time.Unix(1, 0) }}
		o.responseModel(in)
		o.end(context.Background(), &usage.Record{}, false)
		if sink.got.ResponseModel != want {
			t.Errorf("upstream model %.20q: observed %.20q, want %.20q", in, sink.got.ResponseModel, want)
		}
	}
	var none *observation // not observed: no panic
	none.responseModel("x")
}
