package credentials

import "time"

// TokenLifetime reads, unverified, when a ServiceAccount token's lifetime began and when it ends: enough
// for `flotilla join` to decide whether a token it issued earlier can stay.
func TokenLifetime(token string) (issued, expires time.Time, ok bool) {
	t, ok := parseServiceAccountToken(token)
	if !ok || t.expires.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	return t.issued, t.expires, true
}
