package lab

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Ordinary users: a client certificate from the lab's CA names a user (CN) and her groups (O), and the
// apiservers grant her exactly what their RBAC binds to those names (plus system:authenticated's
// discovery rights). Tests bind the roles they mean her to have.

// UserClient is a client of the management cluster acting as user, in the given groups, with no rights of
// its own: a certificate from the lab's CA, without system:masters or flotilla's group.
func (l *Lab) UserClient(user string, groups ...string) (kubernetes.Interface, *rest.Config, error) {
	return l.userClient(l.Management, user, groups...)
}

// WorkloadUserClient is UserClient for the workload cluster of that name.
func (l *Lab) WorkloadUserClient(cluster, user string, groups ...string) (kubernetes.Interface, *rest.Config, error) {
	c := l.Workload(cluster)
	if c == nil {
		return nil, nil, fmt.Errorf("no workload cluster %q", cluster)
	}
	return l.userClient(c, user, groups...)
}

// issuing serialises certificate files: two clients of one user share them.
var issuing sync.Mutex

var notFileName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (l *Lab) userClient(c *Cluster, user string, groups ...string) (kubernetes.Interface, *rest.Config, error) {
	if l.ca == nil {
		// Only the process that started the lab holds its CA key (it is never written to disk).
		return nil, nil, fmt.Errorf("the lab's CA is only at hand in the process that started the lab")
	}
	for _, g := range groups {
		if g == "system:masters" || g == FlotillaGroup {
			return nil, nil, fmt.Errorf("group %q is not an ordinary user's", g)
		}
	}
	issuing.Lock()
	defer issuing.Unlock()
	dir := filepath.Join(l.Dir, "users", c.Name)
	ca := &authority{cert: l.ca.cert, key: l.ca.key, CertPEM: l.ca.CertPEM, dir: dir}
	file := notFileName.ReplaceAllString(strings.Join(append([]string{user}, groups...), "+"), "-")
	id, err := ca.client(file, user, groups...)
	if err != nil {
		return nil, nil, err
	}
	// A kubeconfig beside the certificate lets a person retrace a test's requests with kubectl.
	kubeconfig := filepath.Join(dir, file+".kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.Name, c.Server, ca.CertPEM, id); err != nil {
		return nil, nil, err
	}
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return client, cfg, nil
}
