package credentials

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/oauth2"
	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/utils/ptr"
)

// SelfTokenRules let a ServiceAccount request tokens for itself and for no other, which is all Token
// needs to renew its own.
func SelfTokenRules(serviceAccount string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{
		APIGroups:     []string{""},
		Resources:     []string{"serviceaccounts/token"},
		ResourceNames: []string{serviceAccount},
		Verbs:         []string{"create"},
	}}
}

// TokenOptions tune the renewal of a ServiceAccount token.
type TokenOptions struct {
	// Lifetime asked of each new token; zero means an hour. The apiserver refuses less than 10 minutes.
	Lifetime time.Duration
	// RenewAfter is the fraction of a token's lifetime after which it is renewed; zero means 0.8, as the
	// kubelet renews projected tokens.
	RenewAfter float64
}

// renewRetry spaces renewals that failed, while the token in hand is still good.
const renewRetry = 5 * time.Second

// Token is a ServiceAccount token that renews itself through TokenRequest before it expires. Requests
// renew it when it is due or when the apiserver answered 401; Run renews it even when no request comes.
type Token struct {
	source transport.ResettableTokenSource
	renew  *renewer
}

// RenewingTokenConfig makes cfg's ServiceAccount token renew itself. When cfg's bearer token (BearerToken,
// else BearerTokenFile, read once) is a ServiceAccount JWT with an expiry, it returns a config whose
// requests carry a token renewed, with the token in hand, before it expires; the ServiceAccount needs
// SelfTokenRules. Any other cfg (no token, not a ServiceAccount's, a legacy token that never expires) comes
// back unchanged, with a nil *Token.
func RenewingTokenConfig(cfg *rest.Config, opts TokenOptions) (*rest.Config, *Token, error) {
	raw := cfg.BearerToken
	if raw == "" && cfg.BearerTokenFile != "" {
		b, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the token: %w", err)
		}
		raw = strings.TrimSpace(string(b))
	}
	sa, ok := parseServiceAccountToken(raw)
	if !ok || sa.expires.IsZero() {
		return cfg, nil, nil
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = time.Hour
	}
	if opts.RenewAfter == 0 {
		opts.RenewAfter = 0.8
	}
	if sa.issued.IsZero() {
		sa.issued = time.Now()
	}
	r := &renewer{opts: opts, base: rest.AnonymousClientConfig(cfg), current: raw, sa: sa}
	t := &Token{source: transport.NewCachedTokenSource(r), renew: r}
	out := rest.CopyConfig(cfg)
	out.BearerToken, out.BearerTokenFile = "", ""
	out.Wrap(transport.ResettableTokenSourceWrapTransport(t.source))
	return out, t, nil
}

// Run renews the token when it is due until ctx ends, so that an idle client never lets it lapse.
func (t *Token) Run(ctx context.Context) {
	for {
		wait := renewRetry
		if tok, err := t.source.Token(); err == nil && time.Until(tok.Expiry) > 0 {
			wait = time.Until(tok.Expiry)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Expiry is when the token in use expires.
func (t *Token) Expiry() time.Time {
	t.renew.mu.Lock()
	defer t.renew.mu.Unlock()
	return t.renew.sa.expires
}

// ServiceAccount is whose token t renews: flotilla grants that identity, and no other, read access to the
// workload namespaces it uses.
func (t *Token) ServiceAccount() (namespace, name string) {
	t.renew.mu.Lock()
	defer t.renew.mu.Unlock()
	return t.renew.sa.namespace, t.renew.sa.name
}

// renewer is the token source under client-go's cache: the cache asks it for a token only when the one it
// holds is due (the oauth2 expiry is the renewal time) or was answered 401, so every call but the first
// renews.
type renewer struct {
	opts TokenOptions
	// base is the apiserver and TLS settings, without credentials.
	base *rest.Config

	mu      sync.Mutex
	current string
	sa      serviceAccountToken
	started bool
}

func (r *renewer) Token() (*oauth2.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	due := renewalTime(r.sa.issued, r.sa.expires, r.opts.RenewAfter)
	if !r.started && time.Now().Before(due) {
		r.started = true
		return &oauth2.Token{AccessToken: r.current, Expiry: due}, nil
	}
	r.started = true
	if err := r.renewLocked(); err != nil {
		if time.Now().After(r.sa.expires) {
			return nil, err
		}
		logrus.Warnf("%v; retrying in %s with the current token, valid until %s", err, renewRetry, r.sa.expires.Format(time.RFC3339))
		return &oauth2.Token{AccessToken: r.current, Expiry: time.Now().Add(renewRetry)}, nil
	}
	return &oauth2.Token{AccessToken: r.current, Expiry: renewalTime(r.sa.issued, r.sa.expires, r.opts.RenewAfter)}, nil
}

// renewLocked asks, with the current token, for a new token of the same ServiceAccount.
func (r *renewer) renewLocked() error {
	c := rest.CopyConfig(r.base)
	c.BearerToken = r.current
	client, err := kubernetes.NewForConfig(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := client.CoreV1().ServiceAccounts(r.sa.namespace).CreateToken(ctx, r.sa.name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(r.opts.Lifetime / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("renewing the token of ServiceAccount %s/%s (it needs create on serviceaccounts/token for itself): %w", r.sa.namespace, r.sa.name, err)
	}
	sa, ok := parseServiceAccountToken(tr.Status.Token)
	if !ok {
		sa = serviceAccountToken{namespace: r.sa.namespace, name: r.sa.name, expires: tr.Status.ExpirationTimestamp.Time}
	}
	if sa.issued.IsZero() {
		sa.issued = time.Now()
	}
	r.current, r.sa = tr.Status.Token, sa
	logrus.Infof("renewed token of ServiceAccount %s/%s, valid until %s", sa.namespace, sa.name, sa.expires.Format(time.RFC3339))
	return nil
}
