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

	gorilla "github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/flotilla-io/flotilla/kubeletauth"
)

// serveKubeletAPI serves virtual-kubelet's kubelet HTTP API (logs, exec, attach, port-forward, stats)
// over TLS, so `kubectl logs` and `kubectl exec` on a proxy pod reach its delegate. Callers are
// authenticated and authorized by the management apiserver, as a kubelet's are (see package kubeletauth);
// reviews is the management client those reviews go through: one of their own, so a flood of bogus tokens
// waits on its rate limit and never on pod work's.
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

	auth, err := kubeletauth.New(reviews, o.NodeName, o.ClientCAFile)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("/", podRoutes(api.PodHandlerConfig{
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
	}))

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

// A kubelet's stream timeouts (its --streaming-connection-idle-timeout default, and the streaming server's
// stream creation timeout). virtual-kubelet's own defaults close an exec, attach or port-forward that is
// quiet for 30 seconds: a shell left at its prompt, a port-forward between requests.
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
)

// podRoutes is virtual-kubelet's kubelet API with a kubelet's stream timeouts. Its PodHandler passes
// port-forward the idle and creation timeouts the wrong way round (v1.13, still in v1.14), so port-forward has a route of
// its own, matched first, that passes them right.
func podRoutes(cfg api.PodHandlerConfig) http.Handler {
	cfg.StreamIdleTimeout, cfg.StreamCreationTimeout = streamIdleTimeout, streamCreationTimeout
	r := gorilla.NewRouter()
	r.HandleFunc("/portForward/{namespace}/{pod}", api.HandlePortForward(cfg.PortForward,
		api.WithPortForwardStreamIdleTimeout(streamIdleTimeout), api.WithPortForwardCreationTimeout(streamCreationTimeout),
	)).Methods(http.MethodPost, http.MethodGet)
	r.PathPrefix("/").Handler(api.PodHandler(cfg, true))
	return r
}
