package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	genericfilters "k8s.io/apiserver/pkg/endpoints/filters"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericmux "k8s.io/apiserver/pkg/server/mux"
	"k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/server/routes"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/flotilla-io/flotilla/internal/serve"
)

// Access is how /metrics is guarded on an address that is not a loopback one.
type Access struct {
	// Management asks the management apiserver who a caller is (TokenReview) and whether it may read
	// /metrics (SubjectAccessReview); a node identity may ask both (ClusterRole system:node).
	Management kubernetes.Interface
	// CertFile and KeyFile are the HTTPS serving certificate.
	CertFile, KeyFile string
	// ClientCAFile, if set, also admits callers by a client certificate it signed, as the kubelet API does.
	ClientCAFile string
}

// Serve serves /metrics on addr until ctx ends, and with profiling Go's profiles under /debug/pprof/ beside
// it. On a loopback address it answers anyone over HTTP, as before; on any other address it answers over
// HTTPS, and only callers the management apiserver authenticates (a bearer token, or a client certificate of
// Access.ClientCAFile) and authorizes to get the non-resource URL of the request, as kube-rbac-proxy and
// kube-apiserver do: no credentials 401, no right 403. A caller allowed /metrics is so not allowed
// /debug/pprof/*: a profile shows far more of the process (and a CPU profile costs it CPU).
func (r *Recorder) Serve(ctx context.Context, addr string, access Access, profiling bool) error {
	loopback, err := isLoopback(addr)
	if err != nil {
		return err
	}
	mux := genericmux.NewPathRecorderMux("flotilla-metrics")
	mux.Handle("/metrics", r.handler())
	if profiling {
		routes.Profiling{}.Install(mux)
	}
	var handler http.Handler = mux
	var tlsConfig *tls.Config
	if !loopback {
		if handler, err = guarded(mux, access); err != nil {
			return err
		}
		if tlsConfig, err = servingTLS(access); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	serve.Until(ctx, l, handler, "metrics endpoint")
	return nil
}

// isLoopback says whether addr (host:port) listens on loopback addresses only: an IP address of the
// loopback range, or localhost. An empty host (all addresses) is not.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// guarded puts h behind the management apiserver's delegated authentication and authorization, with
// k8s.io/apiserver's own filters.
func guarded(h http.Handler, access Access) (http.Handler, error) {
	if access.Management == nil {
		return nil, errors.New("no management client to authenticate and authorize callers with")
	}
	authnConfig := authenticatorfactory.DelegatingAuthenticatorConfig{
		// No anonymous access: a caller without credentials is refused (401).
		TokenAccessReviewClient:  access.Management.AuthenticationV1(),
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      options.DefaultAuthWebhookRetryBackoff(),
		CacheTTL:                 2 * time.Minute,
	}
	if access.ClientCAFile != "" {
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", access.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		authnConfig.ClientCertificateCAContentProvider = ca
	}
	authn, _, err := authnConfig.New()
	if err != nil {
		return nil, fmt.Errorf("delegated authentication: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: access.Management.AuthorizationV1(),
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       options.DefaultAuthWebhookRetryBackoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("delegated authorization: %w", err)
	}
	h = genericfilters.WithAuthorization(h, authz, scheme.Codecs)
	h = genericfilters.WithAuthentication(h, authn, genericfilters.Unauthorized(scheme.Codecs), nil, nil)
	// /metrics and /debug/pprof/* are no API paths: each request is a non-resource one, verb get (or post
	// for /debug/pprof/symbol), authorized on its own path.
	return genericfilters.WithRequestInfo(h, &request.RequestInfoFactory{
		APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api"),
	}), nil
}

// servingTLS is the HTTPS configuration of the guarded endpoint.
func servingTLS(access Access) (*tls.Config, error) {
	if access.CertFile == "" || access.KeyFile == "" {
		return nil, errors.New("a serving certificate and key are needed to serve on an address that is not a loopback one")
	}
	cert, err := tls.LoadX509KeyPair(access.CertFile, access.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if access.ClientCAFile != "" {
		// The authenticator verifies a certificate offered against the CA; token callers offer none.
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg, nil
}
