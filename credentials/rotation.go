package credentials

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	certificatesv1 "k8s.io/api/certificates/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/connrotation"
	"k8s.io/client-go/util/keyutil"
)

// rotationCheckPeriod is how often the transport looks for a renewed certificate, as the kubelet's does;
// the old certificate stays valid well past the renewal, so nothing hurries.
const rotationCheckPeriod = 10 * time.Second

// NodeCertificate is a node client certificate that renews itself before it expires. Run it for as long
// as the config NodeClientConfig returned is used.
type NodeCertificate struct {
	node    string
	manager certificate.Manager
	// dialer tracks the connections of the config's transport, to close them when the certificate changes.
	dialer *connrotation.Dialer
}

// NodeClientConfig makes cfg's node client certificate renew itself. When cfg authenticates with a
// certificate of user system:node:<name> in group system:nodes, it returns a config presenting, on every
// new connection, the current certificate of a client-go certificate manager, which keeps it in certDir
// and renews it through CSRs made with the node's own identity (approved by kube-controller-manager when
// the node holds SelfRenewalBinding). Any other cfg comes back unchanged, with a nil *NodeCertificate.
//
// A certificate certDir already holds (renewed by an earlier run) takes precedence over cfg's, so a
// restart keeps the newest.
func NodeClientConfig(cfg *rest.Config, certDir string) (*rest.Config, *NodeCertificate, error) {
	certPEM, keyPEM, err := clientCertificate(cfg)
	if err != nil || certPEM == nil {
		return cfg, nil, err
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the client certificate: %w", err)
	}
	node, ok := nodeOf(certs[0])
	if !ok {
		return cfg, nil, nil
	}
	if cfg.Transport != nil || cfg.Dial != nil {
		return nil, nil, fmt.Errorf("the config of node %s already has a transport or dialer, so its certificate cannot be rotated", node)
	}
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, nil, err
	}
	certFile, keyFile := cfg.CertFile, cfg.KeyFile
	if len(cfg.CertData) > 0 {
		// The file store bootstraps from files only.
		certFile, keyFile = filepath.Join(certDir, "flotilla-client-bootstrap.crt"), filepath.Join(certDir, "flotilla-client-bootstrap.key")
		if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			return nil, nil, err
		}
	}
	store, err := certificate.NewFileStore("flotilla-client", certDir, certDir, certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate store in %s: %w", certDir, err)
	}
	if stored, err := store.Current(); err == nil && stored.Leaf != nil {
		if other, _ := nodeOf(stored.Leaf); other != node {
			return nil, nil, fmt.Errorf("%s holds a certificate of %s, not of node %s: give each node its own folder", certDir, stored.Leaf.Subject.CommonName, node)
		}
	}

	anonymous := rest.AnonymousClientConfig(cfg)
	manager, err := certificate.NewManager(&certificate.Config{
		// Renewals are made as the node itself, with the certificate they replace.
		ClientsetFn: func(current *tls.Certificate) (kubernetes.Interface, error) {
			if current == nil {
				return nil, fmt.Errorf("node %s has no valid client certificate left to renew with; join it again", node)
			}
			c := rest.CopyConfig(anonymous)
			c.CertData = pem.EncodeToMemory(&pem.Block{Type: certutil.CertificateBlockType, Bytes: current.Certificate[0]})
			key, err := keyutil.MarshalPrivateKeyToPEM(current.PrivateKey)
			if err != nil {
				return nil, err
			}
			c.KeyData = key
			return kubernetes.NewForConfig(c)
		},
		Template:         clientRequest(node),
		Usages:           clientUsages,
		SignerName:       certificatesv1.KubeAPIServerClientKubeletSignerName,
		CertificateStore: store,
		Name:             "flotilla-client",
	})
	if err != nil {
		return nil, nil, fmt.Errorf("certificate manager of node %s: %w", node, err)
	}

	// As the kubelet's UpdateTransport: the TLS settings of cfg without its certificate, which comes from
	// the manager at each handshake; the dialer lets Run close the connections made with an old one.
	tlsConfig, err := rest.TLSConfigFor(anonymous)
	if err != nil {
		return nil, nil, err
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	tlsConfig.Certificates = nil
	tlsConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if cert := manager.Current(); cert != nil {
			return cert, nil
		}
		// No certificate: the server answers 401, which says more than a failed handshake.
		return &tls.Certificate{}, nil
	}
	dialer := connrotation.NewDialer((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	out := rest.CopyConfig(cfg)
	out.Transport = utilnet.SetTransportDefaults(&http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 25,
		DialContext:         dialer.DialContext,
	})
	// The transport carries all TLS settings; client-go refuses a config that sets both.
	out.TLSClientConfig = rest.TLSClientConfig{}
	return out, &NodeCertificate{node: node, manager: manager, dialer: dialer}, nil
}

// Run renews the certificate until ctx ends. When it changes, open connections are closed, so that
// every request from then on is made with the new one.
func (n *NodeCertificate) Run(ctx context.Context) {
	n.manager.Start()
	defer n.manager.Stop()
	last := n.manager.Current()
	wait.Until(func() {
		current := n.manager.Current()
		if current == nil || current == last {
			return
		}
		last = current
		logrus.Infof("renewed client certificate of system:node:%s, valid until %s", n.node, current.Leaf.NotAfter.Format(time.RFC3339))
		n.dialer.CloseAll()
	}, rotationCheckPeriod, ctx.Done())
}

// Current is the certificate new connections present; nil once it expired without renewal.
func (n *NodeCertificate) Current() *tls.Certificate { return n.manager.Current() }

// clientCertificate is cfg's client certificate and key in PEM, or nil when it has none.
func clientCertificate(cfg *rest.Config) (certPEM, keyPEM []byte, err error) {
	switch {
	case len(cfg.CertData) > 0:
		return cfg.CertData, cfg.KeyData, nil
	case cfg.CertFile != "":
		if certPEM, err = os.ReadFile(cfg.CertFile); err != nil {
			return nil, nil, err
		}
		if keyPEM, err = os.ReadFile(cfg.KeyFile); err != nil {
			return nil, nil, err
		}
		return certPEM, keyPEM, nil
	}
	return nil, nil, nil
}
