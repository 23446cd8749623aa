package ledger

import (
	"strconv"
	"time"
)

// BreakerTrip is the record of a key's suspension by the spend-velocity
// breaker at at for reason. Its request id names the suspension (the key and
// the instant) and the entry Closes it, so the store keeps one record per
// suspension whoever appends it first: the replica whose write suspended
// the key, its retry when that write's answer was lost and an admin
// reinstated the key before the retry, or the reinstatement itself (which
// appends the record of the suspension it lifts before its own).
func BreakerTrip(keyID, reason string, at time.Time) Entry {
	at = at.UTC().Truncate(time.Microsecond)
	e := Record{Kind: KindBreaker, Time: at, RequestID: "breaker-" + keyID + "-" + strconv.FormatInt(at.UnixMicro(), 10),
		KeyID: keyID, Action: "suspend", Target: keyID, Detail: reason}.Entry()
	e.Closes = true
	return e
}
