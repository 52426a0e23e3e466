package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/rest"
)

// KubeletAPI is the address of the kubelet API the lab's own flotilla of a workload cluster serves, as a
// client configuration trusting its serving certificate and holding no credentials: the caller adds a
// bearer token (BearerToken) or a client certificate (CertData, KeyData), or none to call anonymously.
func (l *Lab) KubeletAPI(cluster string) (*rest.Config, error) {
	p, err := l.flotilla(cluster)
	if err != nil {
		return nil, err
	}
	// The management apiserver verifies kubelets' serving certificates with the lab's CA
	// (--kubelet-certificate-authority); so does this client.
	ca := l.Management.Config.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(l.Management.Config.CAFile); err != nil {
			return nil, err
		}
	}
	return &rest.Config{
		Host:            "https://" + net.JoinHostPort(p.flag("--internal-ip"), strconv.Itoa(kubeletPort)),
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
	}, nil
}

// KubeletClientCertificate is the client certificate and key the cluster's apiserver presents to kubelets
// (--kubelet-client-certificate, --kubelet-client-key): how `kubectl logs` and `exec` reach a node.
func (c *Cluster) KubeletClientCertificate() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(c.APIServer.flag("--kubelet-client-certificate")); err != nil {
		return nil, nil, err
	}
	keyPEM, err = os.ReadFile(c.APIServer.flag("--kubelet-client-key"))
	return certPEM, keyPEM, err
}

// StrangerCertificate is a client certificate naming user and groups, issued by a CA of its own that no
// cluster of the lab, nor any flotilla, trusts: what an attacker can make.
func (l *Lab) StrangerCertificate(user string, groups ...string) (certPEM, keyPEM []byte, err error) {
	ca, err := newAuthority(filepath.Join(l.Dir, "strangers", notFileName.ReplaceAllString(user, "-")))
	if err != nil {
		return nil, nil, fmt.Errorf("a stranger's CA: %w", err)
	}
	id, err := ca.client("client", user, groups...)
	if err != nil {
		return nil, nil, err
	}
	return id.CertPEM, id.KeyPEM, nil
}
