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

// ServiceAccount is whose token t renews: flotilla grants that identity, and no other, read access to the
// workload namespaces it uses.
func (t *Token) ServiceAccount() (namespace, name string) {
	t.renew.mu.Lock()
	defer t.renew.mu.Unlock()
	return t.renew.sa.namespace, t.renew.sa.name
}
