package admin

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/token"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestJTIRevocationOutlivesALoweredTTL is the attack "a token stolen while
// tokens.ttl was 12 h; in response the operator lowers tokens.ttl to 15
// minutes and revokes the token by id": the token still carries its 12 h
// exp, so its revocation must be kept as long as any token can live
// (token.MaxTTL), not the current tokens.ttl, or the stolen token works
// again once the revocation is dropped.
func TestJTIRevocationOutlivesALoweredTTL(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	now := time.Now().UTC()
	h := New(Deps{Store: db, Log: slog.New(slog.DiscardHandler),
		Reload: func(context.Context) error { return nil }, Now: func() time.Time { return now }})
	req := httptest.NewRequest("POST", "/v1/tokens/revoke", strings.NewReader(`{"jti":"tok_stolen"}`))
	if err := h.revokeTokens(httptest.NewRecorder(), req, vkey.Key{ID: "key_admin"}); err != nil {
		t.Fatal(err)
	}
	// The latest a token issued just before the revocation can expire.
	jtis, _, err := db.TokenRevocations(ctx, now.Add(token.MaxTTL-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := jtis["tok_stolen"]; !ok {
		t.Fatalf("the revocation is dropped before a token issued under the longest tokens.ttl (%v) expires", token.MaxTTL)
	}
}
