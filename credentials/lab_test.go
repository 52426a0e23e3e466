package credentials_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/credentials"
	"github.com/flotilla-io/flotilla/test/lab"
)

// These tests run against the management apiserver of a lab (no workload cluster, no flotilla process):
// its kube-controller-manager signs CSRs with the lab's CA, approves nodes' renewals, and its apiserver
// confines nodes with the Node authorizer and NodeRestriction. The lab's admin client (system:masters)
// plays the admin of `flotilla join`.

var shared *lab.Lab

// certificateLifetime is kube-controller-manager's --cluster-signing-duration in this lab. Its signer
// backdates a certificate's NotBefore by 5 minutes and, for lifetimes under 8 hours, ends it at
// issue + lifetime: a 3-minute certificate spans 8 minutes, and the certificate manager renews it at 70-90%
// of that span, 0.6 to 2.2 minutes after issue, before it expires at 3.
const certificateLifetime = 3 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(lab.RunWithLab(m, lab.Options{CertificateLifetime: certificateLifetime}, func(l *lab.Lab) { shared = l }))
}

// nodeConfig issues a node client certificate with the admin's rights and returns a config using it inline,
// as `flotilla join` writes it into a kubeconfig.
func nodeConfig(t *testing.T, node string) *rest.Config {
	t.Helper()
	certPEM, keyPEM, err := credentials.IssueNodeClientCertificate(context.Background(), shared.Management.Client, node)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(shared.Management.Config)
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	return cfg
}

func client(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// whoami is who the apiserver takes the client for, and with which credential (the extra
// authentication.kubernetes.io/credential-id: X509SHA256=<fingerprint> or JTI=<token id>).
func whoami(ctx context.Context, c kubernetes.Interface) (authenticationv1.UserInfo, string, error) {
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, "", err
	}
	id := r.Status.UserInfo.Extra["authentication.kubernetes.io/credential-id"]
	if len(id) != 1 {
		return r.Status.UserInfo, "", nil
	}
	return r.Status.UserInfo, id[0], nil
}

func fingerprint(cert *tls.Certificate) string {
	sum := sha256.Sum256(cert.Certificate[0])
	return "X509SHA256=" + hex.EncodeToString(sum[:])
}

func TestIssueNodeClientCertificate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	node := lab.UniqueName("issue", "")
	cfg := nodeConfig(t, node)
	leaf, err := certutil.ParseCertsPEM(cfg.CertData)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("signed certificate: NotBefore %s before now, NotAfter %s after now", time.Since(leaf[0].NotBefore).Round(time.Second), time.Until(leaf[0].NotAfter).Round(time.Second))
	c := client(t, cfg)

	user, _, err := whoami(ctx, c)
	if err != nil {
		t.Fatalf("SelfSubjectReview as the node: %v", err)
	}
	if user.Username != "system:node:"+node || !slices.Contains(user.Groups, "system:nodes") {
		t.Errorf("the apiserver takes the certificate for %s in %v, want system:node:%s in system:nodes", user.Username, user.Groups, node)
	}
	// The Node authorizer confines a node to what its pods reference: no listing Secrets.
	if _, err := c.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing all Secrets as the node: %v, want Forbidden", err)
	}
	if _, err := c.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets of kube-system as the node: %v, want Forbidden", err)
	}

	// An admin reading the CSRs sees whose this one is and who approved it.
	csrs, err := shared.Management.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, csr := range csrs.Items {
		if strings.HasPrefix(csr.Name, "flotilla-"+node+"-") {
			found = true
			if csr.Spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName || !slices.ContainsFunc(csr.Status.Conditions, func(c certificatesv1.CertificateSigningRequestCondition) bool {
				return c.Type == certificatesv1.CertificateApproved && c.Status == corev1.ConditionTrue
			}) {
				t.Errorf("CSR %s: signer %s, conditions %+v", csr.Name, csr.Spec.SignerName, csr.Status.Conditions)
			}
		}
	}
	if !found {
		t.Errorf("no CSR named flotilla-%s-*", node)
	}

	// The admin's own certificate is no node's: nothing to rotate.
	admin := shared.Management.Config
	if got, nc, err := credentials.NodeClientConfig(admin, t.TempDir()); err != nil || nc != nil || got != admin {
		t.Errorf("credentials.NodeClientConfig of the admin's config = %p, %v, %v; want it unchanged, nil, nil", got, nc, err)
	}
}

func TestIssueNodeClientCertificateWithoutApprovalRights(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	user := lab.UniqueName("requester", "")
	admin := shared.Management.Client
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get", "list", "watch"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoleBindings().Delete(ctx, user, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoles().Delete(ctx, user, metav1.DeleteOptions{})
	})
	requester, _, err := shared.UserClient(user)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = credentials.IssueNodeClientCertificate(ctx, requester, lab.UniqueName("unapproved", ""))
	if err == nil || !strings.Contains(err.Error(), "the admin kubeconfig may not approve CSRs of signer kubernetes.io/kube-apiserver-client-kubelet") {
		t.Errorf("issuing without approval rights: %v, want the admin kubeconfig named as unable to approve", err)
	}
}

func TestNodeCertificateRotation(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin := shared.Management.Client
	node := lab.UniqueName("rotate", "")
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, credentials.SelfRenewalBinding(node), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), credentials.SelfRenewalBinding(node).Name, metav1.DeleteOptions{})
	})

	issued := time.Now()
	dir, joined := t.TempDir(), nodeConfig(t, node)
	cfg, nc, err := credentials.NodeClientConfig(joined, dir)
	if err != nil || nc == nil {
		t.Fatalf("credentials.NodeClientConfig = %v, %v", nc, err)
	}
	first := nc.Current()
	t.Logf("first certificate: NotBefore issue-%s, NotAfter issue+%s", issued.Sub(first.Leaf.NotBefore).Round(time.Second), first.Leaf.NotAfter.Sub(issued).Round(time.Second))
	c := client(t, cfg) // built once: it must outlive the certificate it started with
	go nc.Run(ctx)

	// A steady trickle of requests, as flotilla's lease renewals, keeps connections open across the
	// rotation; every one of them must succeed.
	var requests, failures atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, _, err := whoami(ctx, c); err != nil && ctx.Err() == nil {
				failures.Add(1)
				t.Errorf("request at issue+%s: %v", time.Since(issued).Round(time.Second), err)
			}
			requests.Add(1)
			time.Sleep(time.Second)
		}
	}()

	_, id, err := whoami(ctx, c)
	if err != nil || id != fingerprint(first) {
		t.Fatalf("before rotation the server sees %s (%v), want the first certificate %s", id, err, fingerprint(first))
	}
	lab.Poll(t, 3*time.Minute, "a renewed certificate", func() (bool, error) {
		return nc.Current().Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0, nil
	})
	second := nc.Current()
	t.Logf("renewed at issue+%s (certificate manager's deadline: 70-90%% of the %s span after NotBefore); new NotAfter issue+%s",
		time.Since(issued).Round(time.Second), first.Leaf.NotAfter.Sub(first.Leaf.NotBefore), second.Leaf.NotAfter.Sub(issued).Round(time.Second))
	// Open connections are closed on rotation: the server sees the new certificate long before the old
	// one expires, not only once it refuses the old.
	lab.Poll(t, 15*time.Second, // the transport looks for a renewed certificate every 10 s
		"requests with the renewed certificate", func() (bool, error) {
			_, id, err := whoami(ctx, c)
			return id == fingerprint(second), err
		})
	t.Logf("the server sees the renewed certificate at issue+%s", time.Since(issued).Round(time.Second))
	// A restart finds the renewed certificate in the folder, not the one it joined with.
	if _, again, err := credentials.NodeClientConfig(joined, dir); err != nil {
		t.Errorf("after a restart: %v", err)
	} else if got := again.Current().Leaf.SerialNumber; got.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Errorf("after a restart the certificate is serial %v, want the renewed one, %v", got, second.Leaf.SerialNumber)
	}

	// Past the first certificate's end, the same client still works, and the server sees a renewed one.
	time.Sleep(time.Until(first.Leaf.NotAfter) + 2*time.Second)
	user, id, err := whoami(ctx, c)
	if err != nil {
		t.Fatalf("request after the first certificate expired: %v", err)
	}
	// Not necessarily the current one: a renewed 3-minute certificate may itself have been renewed in the
	// last 10 s check, whose connections are still open and valid.
	if user.Username != "system:node:"+node || id == fingerprint(first) {
		t.Errorf("after expiry the server sees %s with %s; want system:node:%s with a renewed certificate, not the first %s", user.Username, id, node, fingerprint(first))
	}
	cancel()
	<-done
	t.Logf("%d requests across the rotation at issue+%s, %d failed", requests.Load(), time.Since(issued).Round(time.Second), failures.Load())
}

func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin := shared.Management.Client
	ns, sa := lab.UniqueName("token", ""), "renewer"
	lab.Namespace(t, admin, ns)
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sa}, Rules: credentials.SelfTokenRules(sa)}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The shortest token TokenRequest gives.
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := rest.AnonymousClientConfig(shared.Management.Config)
	start.BearerToken = tr.Status.Token

	// At 0.5% of 10 minutes: a renewal every 3 seconds.
	cfg, tok, err := credentials.RenewingTokenConfig(start, credentials.TokenOptions{Lifetime: 10 * time.Minute, RenewAfter: 0.005})
	if err != nil || tok == nil {
		t.Fatalf("credentials.RenewingTokenConfig = %v, %v", tok, err)
	}
	c := client(t, cfg)
	user, first, err := whoami(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + ns + ":" + sa; user.Username != want || !strings.HasPrefix(first, "JTI=") {
		t.Fatalf("the server sees %s with %q, want %s with a token id", user.Username, first, want)
	}
	firstExpiry := tok.Expiry()
	go tok.Run(ctx)

	renewed := time.Now()
	lab.Poll(t, 30*time.Second, "a renewed token", func() (bool, error) { return tok.Expiry().After(firstExpiry), nil })
	t.Logf("renewed after %s; expiry %s -> %s", time.Since(renewed).Round(100*time.Millisecond), firstExpiry.Format(time.TimeOnly), tok.Expiry().Format(time.TimeOnly))
	_, second, err := whoami(ctx, c)
	if err != nil {
		t.Fatalf("request with the renewed token: %v", err)
	}
	if second == first {
		t.Errorf("the server still sees the first token %s", first)
	}
}

func TestIssueKubeletServingCertificate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	node := lab.UniqueName("serving", "")
	nodeClient := client(t, nodeConfig(t, node))
	ips, dnsNames := []net.IP{net.ParseIP("127.0.0.9")}, []string{node + ".lab"}
	certPEM, keyPEM, err := credentials.IssueKubeletServingCertificate(ctx, shared.Management.Client, nodeClient, node, ips, dnsNames)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert := certs[0]
	if cert.Subject.CommonName != "system:node:"+node || !slices.Equal(cert.DNSNames, dnsNames) || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(ips[0]) ||
		!slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("serving certificate: CN %s, DNS %v, IPs %v, usages %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses, cert.ExtKeyUsage)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(shared.Management.Config.CAData)
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: node + ".lab", Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the serving certificate does not verify against the cluster's CA: %v", err)
	}
}

// A cluster that approves but never signs (EKS, for the kubelet-serving CSRs of a node that is no EC2
// instance): here an admission policy refuses kube-controller-manager's write of the certificate for one
// node, so the CSR stays approved and unsigned.
func TestIssueKubeletServingCertificateNeverSigned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := shared.Management.Client
	node := lab.UniqueName("unsigned", "")
	policies := admin.AdmissionregistrationV1()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{"certificates.k8s.io"}, APIVersions: []string{"v1"},
						Resources: []string{"certificatesigningrequests/status"},
					},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "object.spec.signerName != 'kubernetes.io/kubelet-serving' || object.spec.username != 'system:node:" + node + "'",
				Message:    "this cluster signs no serving certificate for node " + node,
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        node,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	if _, err := policies.ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := policies.ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = policies.ValidatingAdmissionPolicyBindings().Delete(ctx, node, metav1.DeleteOptions{})
		_ = policies.ValidatingAdmissionPolicies().Delete(ctx, node, metav1.DeleteOptions{})
	})
	nodeClient := client(t, nodeConfig(t, node))
	// The apiserver loads new policies from its informer within moments.
	time.Sleep(2 * time.Second)

	started := time.Now()
	_, _, err := credentials.IssueKubeletServingCertificate(ctx, admin, nodeClient, node, []net.IP{net.ParseIP("127.0.0.9")}, nil)
	if !errors.Is(err, credentials.ErrServingSignerRefused) {
		t.Fatalf("issuing where nobody signs: %v, want credentials.ErrServingSignerRefused", err)
	}
	t.Logf("refused after %s: %v", time.Since(started).Round(time.Second), err)
}
