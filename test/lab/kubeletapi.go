package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

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

// BogusToken is a random bearer token no apiserver issued.
func BogusToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "bogus-" + hex.EncodeToString(b)
}

// Flood is what a flood of requests to a kubelet API got.
type Flood struct {
	Start, End time.Time
	// Statuses counts the answers by HTTP status; Errors the requests that got none, by error.
	Statuses map[int]int
	Errors   map[string]int
}

// FloodKubeletAPI sends n requests at once (GET /pods), each with a bogus token of its own, so each costs
// the kubelet API a TokenReview, to the kubelet API of the lab's own flotilla of cluster, and returns when
// all are answered.
func (l *Lab) FloodKubeletAPI(ctx context.Context, cluster string, n int) (Flood, error) {
	cfg, err := l.KubeletAPI(cluster)
	if err != nil {
		return Flood{}, err
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return Flood{}, err
	}
	f := Flood{Statuses: map[int]int{}, Errors: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	f.Start = time.Now()
	for range n {
		wg.Go(func() {
			code, err := getWithToken(ctx, client, cfg.Host+"/pods", BogusToken())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				f.Errors[err.Error()]++
			} else {
				f.Statuses[code]++
			}
		})
	}
	wg.Wait()
	f.End = time.Now()
	return f, nil
}

func getWithToken(ctx context.Context, client *http.Client, url, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
