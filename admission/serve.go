package admission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// shutdownGrace is how long reviews in flight may take to finish once the server is told to stop; the
// apiserver gives a review at most the webhook's timeoutSeconds (5 s in deploy/charts/flotilla).
const shutdownGrace = 10 * time.Second

// Serve listens on addr and serves Handler(taint) over TLS until ctx ends (see ServeListener).
func Serve(ctx context.Context, addr, certFile, keyFile string, taint corev1.Taint) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ServeListener(ctx, l, certFile, keyFile, taint)
}

// ServeListener serves Handler(taint) over TLS on l until ctx ends, then lets reviews in flight finish and
// returns nil. The serving certificate and key are read from their files at the start (an unreadable or
// mismatched pair is an error) and again whenever they change, so a renewed certificate (a Secret volume
// updated by cert-manager, say) is served without a restart; a pair that fails to load keeps the last good one.
func ServeListener(ctx context.Context, l net.Listener, certFile, keyFile string, taint corev1.Taint) error {
	defer l.Close()
	cert, err := newServingCert(certFile, keyFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go cert.content.Run(ctx, 1)

	srv := &http.Server{
		Handler:           Handler(taint),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.get},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          log.New(serverLog{}, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(l, "", "") }()
	logrus.WithFields(logrus.Fields{"address": l.Addr().String(), "path": MutatePath}).Info("admission webhook serving")
	select {
	case err := <-served: // the listener failed
		return err
	case <-ctx.Done():
	}
	logrus.Info("admission webhook stopping")
	stopCtx, stop := context.WithTimeout(context.Background(), shutdownGrace)
	defer stop()
	if err := srv.Shutdown(stopCtx); err != nil {
		return fmt.Errorf("stopping the admission webhook: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// servingCert is the serving certificate, parsed once per change of its files.
type servingCert struct {
	content *dynamiccertificates.DynamicCertKeyPairContent
	current atomic.Pointer[tls.Certificate]
}

func newServingCert(certFile, keyFile string) (*servingCert, error) {
	content, err := dynamiccertificates.NewDynamicServingContentFromFiles("flotilla-webhook", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("serving certificate %s, key %s: %w", certFile, keyFile, err)
	}
	s := &servingCert{content: content}
	if err := s.load(); err != nil {
		return nil, err
	}
	content.AddListener(s)
	return s, nil
}

// Enqueue is called by content whenever the files' content changed (and checked as a matching pair).
func (s *servingCert) Enqueue() {
	if err := s.load(); err != nil {
		logrus.Errorf("keeping the previous serving certificate: %v", err)
	}
}

func (s *servingCert) load() error {
	certPEM, keyPEM := s.content.CurrentCertKeyContent()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	s.current.Store(&cert)
	if leaf := cert.Leaf; leaf != nil {
		logrus.WithFields(logrus.Fields{"subject": leaf.Subject.String(), "notAfter": leaf.NotAfter.Format(time.RFC3339)}).
			Info("serving certificate loaded")
	}
	return nil
}

func (s *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.Load(), nil
}

// serverLog takes the HTTP server's own messages into logrus: a TLS handshake cut short (a TCP probe, a port
// check) at debug level, anything else as a warning, a client that does not trust the certificate (a wrong
// caBundle) included.
type serverLog struct{}

func (serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") && strings.HasSuffix(msg, ": EOF") {
		logrus.Debug(msg)
	} else {
		logrus.Warn(msg)
	}
	return len(p), nil
}
