package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
)

// serveKubeletAPI serves virtual-kubelet's kubelet HTTP API (logs, exec, attach, port-forward, stats)
// over TLS, so `kubectl logs` and `kubectl exec` on a proxy pod reach its delegate. Callers are
// authenticated and authorized by the management apiserver, exactly as a kubelet does: a client certificate
// signed by --client-ca-file (the apiserver's own), or a bearer token it accepts (TokenReview); then a
// SubjectAccessReview of the node's subresource the path maps to (nodes/proxy, nodes/log, nodes/stats,
// nodes/metrics). reviews is the management client those reviews go through: one of their own, so a flood
// of bogus tokens waits on its rate limit and never on pod work's.
func serveKubeletAPI(o *options, reviews kubernetes.Interface, p nodeutil.Provider, proxies corev1listers.PodLister) (stop func(), err error) {
	var cfg nodeutil.NodeConfig
	// A client certificate is verified when one is offered (a stranger's ends the handshake); token callers
	// offer none.
	if err := nodeutil.WithTLSConfig(nodeutil.WithKeyPairFromPath(o.TLSCertFile, o.TLSKeyFile), nodeutil.WithCAFromPath(o.ClientCAFile),
		func(c *tls.Config) error {
			c.ClientAuth = tls.VerifyClientCertIfGiven
			return nil
		})(&cfg); err != nil {
		return nil, fmt.Errorf("kubelet API TLS: %w", err)
	}

	auth, err := nodeutil.WebhookAuth(reviews, o.NodeName, func(c *nodeutil.WebhookAuthConfig) error {
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", o.ClientCAFile)
		if err != nil {
			return err
		}
		c.AuthnConfig.ClientCertificateCAContentProvider = ca
		c.AuthnConfig.CacheTTL = tokenReviewTTL
		c.AuthzConfig.AllowCacheTTL, c.AuthzConfig.DenyCacheTTL = accessAllowedTTL, accessDeniedTTL
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubelet API authentication: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("/", api.PodHandler(api.PodHandlerConfig{
		RunInContainer:    p.RunInContainer,
		AttachToContainer: p.AttachToContainer,
		GetContainerLogs:  p.GetContainerLogs,
		GetPods:           p.GetPods,
		GetPodsFromKubernetes: func(context.Context) ([]*corev1.Pod, error) {
			return proxies.List(labels.Everything())
		},
		GetStatsSummary:    p.GetStatsSummary,
		GetMetricsResource: p.GetMetricsResource,
		PortForward:        p.PortForward,
	}, true))

	addr := net.JoinHostPort(o.KubeletBind, strconv.Itoa(o.KubeletPort))
	l, err := tls.Listen("tcp", addr, cfg.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("kubelet API on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: nodeutil.WithAuth(auth, mux), ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logrus.Errorf("kubelet API: %v", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}

// How long the kubelet API trusts the management apiserver's answers: a kubelet's defaults
// (KubeletConfiguration authentication.webhook.cacheTTL, authorization.webhook.cacheAuthorizedTTL and
// cacheUnauthorizedTTL). A token's TokenReview, accepted or rejected, is asked again after tokenReviewTTL (one
// the apiserver could not answer is not kept); a caller's SubjectAccessReview after accessAllowedTTL when
// allowed, accessDeniedTTL when denied, so a right granted reaches the node within 30 s and one withdrawn
// within 5 minutes.
const (
	tokenReviewTTL   = 2 * time.Minute
	accessAllowedTTL = 5 * time.Minute
	accessDeniedTTL  = 30 * time.Second
)
