package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/test/lab"
)

// kubeletAuthCluster is the workload cluster whose flotilla's kubelet API the authentication tests call.
const kubeletAuthCluster = "us-west-2-1"

// kubeletPath is a request to the kubelet API and the subresource of the node a kubelet authorizes it as
// (k8s.io/kubernetes pkg/kubelet/server/auth.go, which virtual-kubelet's nodeutil copies): /stats/... is
// nodes/stats, /metrics/... nodes/metrics, /logs/... nodes/log, everything else nodes/proxy; the verb is the
// HTTP method's (GET get, POST create).
type kubeletPath struct {
	method, path, subresource string
	// allowed is the status a caller with the subresource's right gets; 0 for any but 401 and 403 (the
	// request reached a handler that has no pod to act on, or, for paths a kubelet serves and
	// virtual-kubelet does not, none: 404).
	allowed int
}

var kubeletPaths = []kubeletPath{
	{"GET", "/pods", "proxy", http.StatusOK},
	{"GET", "/containerLogs/default/absent/c", "proxy", 0},
	{"POST", "/exec/default/absent/c?command=true&output=1", "proxy", 0},
	{"POST", "/run/default/absent/c?cmd=true", "proxy", 0},
	{"POST", "/attach/default/absent/c?output=1", "proxy", 0},
	{"POST", "/portForward/default/absent", "proxy", 0},
	{"GET", "/logs/", "log", 0},
	{"GET", "/stats/summary", "stats", http.StatusOK},
	{"GET", "/metrics/resource", "metrics", http.StatusOK},
	{"GET", "/metrics", "metrics", 0},
}

// TestKubeletAPIAuthentication calls one flotilla's kubelet API (port 10250 at its node's InternalIP) as
// the management apiserver, metrics-server or an attacker would, and checks a kubelet's answers: anonymous
// and unknown tokens 401; a real management user's token or trusted certificate 403 on every path whose node
// subresource she has no right to, and through on those she has (the allowed rows, so the test can fail);
// a certificate from a CA nobody trusts refused in the TLS handshake; the apiserver's own kubelet client
// certificate accepted.
func TestKubeletAPIAuthentication(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	node := kubeletAuthCluster
	base, ns := kubeletAPIOf(t, node)

	type credential struct {
		name   string
		config func(*rest.Config)
		// rights are the node subresources it may use; authenticated false means none is known to the
		// apiserver.
		rights        []string
		authenticated bool
	}
	withToken := func(token string) func(*rest.Config) { return func(c *rest.Config) { c.BearerToken = token } }
	withCertificate := func(cert, key []byte) func(*rest.Config) {
		return func(c *rest.Config) { c.CertData, c.KeyData = cert, key }
	}
	creds := []credential{
		{name: "anonymous", config: func(*rest.Config) {}},
		{name: "an unknown token", config: withToken(lab.BogusToken())},
	}
	// ServiceAccounts of the management cluster, real users with a token: one with an ordinary right on
	// nodes (get, list) but none of their subresources, one per subresource.
	for _, rights := range [][]string{nil, {"proxy"}, {"log"}, {"stats"}, {"metrics"}} {
		name := "kubelet-" + rightsName(rights)
		token := serviceAccountWithNodeRights(ctx, t, ns, name, node, rights)
		creds = append(creds, credential{name: "ServiceAccount " + name + "'s token", config: withToken(token),
			rights: rights, authenticated: true})
	}
	// Users with a client certificate from the lab's CA, which signs the apiserver's kubelet client
	// certificate and is each flotilla's --client-ca-file.
	for _, rights := range [][]string{nil, {"proxy"}} {
		user := ns + "-cert-" + rightsName(rights)
		grantNodeRights(ctx, t, user, rbacv1.Subject{Kind: rbacv1.UserKind, Name: user}, node, rights)
		_, cfg, err := shared.UserClient(user)
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, credential{name: "user " + user + "'s certificate", config: withCertificate(cfg.CertData, cfg.KeyData),
			rights: rights, authenticated: true})
	}
	cert, key, err := shared.Management.KubeletClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	creds = append(creds, credential{name: "the management apiserver's kubelet client certificate", config: withCertificate(cert, key),
		rights: []string{"proxy", "log", "stats", "metrics"}, authenticated: true})

	for _, c := range creds {
		cfg := rest.CopyConfig(base)
		c.config(cfg)
		client, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range kubeletPaths {
			code, body, err := call(ctx, client, cfg.Host, p.method, p.path)
			if err != nil {
				t.Errorf("%s: %s %s: %v", c.name, p.method, p.path, err)
				continue
			}
			var wrong bool
			switch {
			case !c.authenticated:
				wrong = code != http.StatusUnauthorized
			case !slices.Contains(c.rights, p.subresource):
				wrong = code != http.StatusForbidden
			case p.allowed != 0:
				wrong = code != p.allowed
			default:
				wrong = code == http.StatusUnauthorized || code == http.StatusForbidden
			}
			if wrong {
				t.Errorf("%s: %s %s (nodes/%s): %d %q", c.name, p.method, p.path, p.subresource, code, body)
			} else {
				t.Logf("%s: %s %s (nodes/%s): %d", c.name, p.method, p.path, p.subresource, code)
			}
		}
	}

	// A certificate naming the apiserver's own kubelet client, in system:masters, but from a CA of its own:
	// the TLS handshake ends before any HTTP.
	cert, key, err = shared.StrangerCertificate("kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(base)
	cfg.CertData, cfg.KeyData = cert, key
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	code, _, err := call(ctx, client, cfg.Host, "GET", "/pods")
	if err == nil || !strings.Contains(err.Error(), "remote error: tls: unknown certificate authority") {
		t.Errorf("a certificate from an untrusted CA: status %d, error %v; want the handshake refused (unknown certificate authority)", code, err)
	} else {
		t.Logf("a certificate from an untrusted CA: %v", err)
	}
}

// TestKubeletAPIReviewCache: the kubelet API asks the management apiserver about a token once, and keeps
// the answer (2 minutes, accepted or rejected): 30 requests with one token cost one TokenReview, counted by
// the management apiserver.
func TestKubeletAPIReviewCache(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	node := kubeletAuthCluster
	base, ns := kubeletAPIOf(t, node)
	token := serviceAccountWithNodeRights(ctx, t, ns, "cached", node, []string{"stats"})

	const requests = 30
	for _, tc := range []struct {
		what, token string
		want        int
	}{
		{"an accepted token", token, http.StatusOK},
		{"a rejected token", lab.BogusToken(), http.StatusUnauthorized},
	} {
		cfg := rest.CopyConfig(base)
		cfg.BearerToken = tc.token
		client, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		before := tokenReviews(ctx, t)
		for range requests {
			code, body, err := call(ctx, client, cfg.Host, "GET", "/stats/summary")
			if err != nil || code != tc.want {
				t.Fatalf("%s: %d %q %v; want %d", tc.what, code, body, err, tc.want)
			}
		}
		// At least the first request's review, so the count is known to be live; a few more allow for
		// other callers of the management apiserver meanwhile.
		reviews := tokenReviews(ctx, t) - before
		if reviews < 1 || reviews > 3 {
			t.Errorf("%s: %d requests made %v TokenReviews; want 1 (a few more from other callers at most)", tc.what, requests, reviews)
		} else {
			t.Logf("%s: %d requests, %v TokenReviews", tc.what, requests, reviews)
		}
	}
}

// kubeletAPIOf is the address of the kubelet API of cluster's flotilla, with no credentials, and a
// namespace of the test's own in the management cluster.
func kubeletAPIOf(t *testing.T, cluster string) (*rest.Config, string) {
	t.Helper()
	base, err := shared.KubeletAPI(cluster)
	if err != nil {
		t.Fatal(err)
	}
	return base, namespace(t, shared.Management.Client)
}

// serviceAccountWithNodeRights creates a management ServiceAccount with the given rights on node (see
// grantNodeRights) and returns a token of it.
func serviceAccountWithNodeRights(ctx context.Context, t *testing.T, ns, name, node string, subresources []string) string {
	t.Helper()
	if _, err := shared.Management.Client.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grantNodeRights(ctx, t, ns+"-"+name, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}, node, subresources)
	token, err := shared.Management.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](900)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return token.Status.Token
}

// grantNodeRights binds subject to a ClusterRole of nodes get and list plus get and create on each of the
// node subresources given, and waits until the management apiserver authorizes them on node (so no early
// denial lands in a kubelet API's cache). Both are removed when the test ends.
func grantNodeRights(ctx context.Context, t *testing.T, name string, subject rbacv1.Subject, node string, subresources []string) {
	t.Helper()
	rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list"}}}
	for _, s := range subresources {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes/" + s}, Verbs: []string{"get", "create"}})
	}
	rbac := shared.Management.Client.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{subject},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{}) })

	user, groups := subject.Name, []string{"system:authenticated"}
	if subject.Kind == rbacv1.ServiceAccountKind {
		user = "system:serviceaccount:" + subject.Namespace + ":" + subject.Name
		groups = append(groups, "system:serviceaccounts", "system:serviceaccounts:"+subject.Namespace)
	}
	eventually(t, 30*time.Second, name+"'s rights on node "+node, func(ctx context.Context) (bool, string) {
		for _, s := range append([]string{""}, subresources...) {
			review, err := shared.Management.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: "get", Resource: "nodes", Subresource: s, Name: node}},
			}, metav1.CreateOptions{})
			if err != nil {
				return false, err.Error()
			}
			if !review.Status.Allowed {
				return false, "nodes/" + s + " not allowed yet"
			}
		}
		return true, ""
	})
}

// call makes one request of the kubelet API and returns its status and the start of its body.
func call(ctx context.Context, client *http.Client, host, method, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, host+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return resp.StatusCode, string(bytes.TrimSpace(body)), nil
}

// rightsName names a set of node subresource rights for the names of the users holding them.
func rightsName(subresources []string) string {
	if len(subresources) == 0 {
		return "nothing"
	}
	return strings.Join(subresources, "-")
}

// tokenReviews is the management apiserver's count of TokenReviews created since it started.
func tokenReviews(ctx context.Context, t *testing.T) float64 {
	t.Helper()
	n, err := shared.Management.Requests(ctx, "tokenreviews", "POST")
	if err != nil {
		t.Fatal(err)
	}
	return n
}
