package proxy

import "testing"

// TestSettlement: charged ≥ billed at every way a call can end.
func TestSettlement(t *testing.T) {
	const held = 1000
	tests := []struct {
		name            string
		o               outcome
		metered         int64
		hasHold         bool
		charged         int64
		over, estimated bool
	}{
		{"never sent", outcome{}, 0, true, 0, false, false},
		{"upstream refused", outcome{sent: true, refused: true}, 0, true, 0, false, false},
		{"metered", outcome{sent: true, metered: true}, 300, true, 300, false, false},
		{"metered above the hold", outcome{sent: true, metered: true}, 5000, true, 5000, true, false},
		{"metered, no budget", outcome{sent: true, metered: true}, 5000, false, 5000, false, false},
		{"no usage (background, JSON or SSE)", outcome{sent: true}, 20, true, held, false, true},
		{"hang-up before the answer", outcome{sent: true}, 0, true, held, false, true},
		{"local count above the hold", outcome{sent: true}, 4000, true, held, false, true},
	}
	for _, tt := range tests {
		charged, over := settlement(tt.o, tt.metered, held, tt.hasHold)
		if charged != tt.charged || over != tt.over || tt.o.unmetered() != tt.estimated {
			t.Errorf("%s: charged %d over %v unmetered %v; want %d %v %v", tt.name, charged, over, tt.o.unmetered(), tt.charged, tt.over, tt.estimated)
		}
	}
}
