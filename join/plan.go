// Package join sets up both sides of one virtual node, as `flotilla join` does: the identities flotilla
// holds in the management and the workload cluster, the roles and admission policies that confine them
// (deploy/), and the Secret that carries flotilla's credentials. It is idempotent (a second run changes
// nothing and says so), can say what it would do (dry run), and unjoin removes what it made.
//
// plan.go holds the pure rules: names, the objects of each side, when a credential is still good. join.go
// applies them.
package join

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/flotilla-io/flotilla/credentials"
	"github.com/flotilla-io/flotilla/tenancy"
)

// Namespace is where join puts what it makes in both clusters.
const Namespace = tenancy.IdentityNamespace

// The keys of the credentials Secret (SecretName) and of the files --output-dir writes: what flotilla's
// deployment mounts and its flags point at.
const (
	// KeyManagementKubeconfig: the node identity system:node:<node> (a client certificate flotilla renews).
	KeyManagementKubeconfig = "management.kubeconfig"
	// KeyFailoverKubeconfig: the failover identity, which only sets the cluster-lost taint (a token).
	KeyFailoverKubeconfig = "failover.kubeconfig"
	// KeyWorkloadKubeconfig: the workload identity (a token flotilla renews).
	KeyWorkloadKubeconfig = "workload.kubeconfig"
	// KeyKubeletCert and KeyKubeletKey: the kubelet API's serving certificate.
	KeyKubeletCert = "kubelet.crt"
	KeyKubeletKey  = "kubelet.key"
	// KeyClientCA: the CA of the management apiserver's kubelet client certificate (--client-ca-file).
	KeyClientCA = "client-ca.crt"
)

// LabelNode marks what join makes for one virtual node, in both clusters, so an admin can list it.
const LabelNode = "flotilla.io/joined-node"

// Roles of deploy/charts/flotilla/files/rbac that the per-node bindings refer to.
const (
	nodeRole           = "flotilla-node"
	failoverRole       = "flotilla-failover"
	leaderRole         = "flotilla-leader-election"
	workloadRole       = "flotilla-workload"
	selfNodeClientRole = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
)

// NodeUser is the management cluster's user name of a virtual node, as of every node.
func NodeUser(node string) string { return "system:node:" + node }

// SecretName is the management Secret holding a virtual node's credentials.
func SecretName(node string) string { return "flotilla-" + node }

// FailoverAccount is the management ServiceAccount that may set the cluster-lost taint
// (deploy/charts/flotilla/files/policies/management.yaml matches its prefix).
func FailoverAccount(node string) string { return "flotilla-failover-" + node }

// WorkloadAccount is flotilla's ServiceAccount in the workload cluster: flotilla.<management>.<node>, so the
// workload apiserver's admission policy (deploy/charts/flotilla/files/policies/workload.yaml) reads the owner from the user name.
func WorkloadAccount(managementID, node string) string {
	return "flotilla." + managementID + "." + node
}

// Validate checks what the names above are built from.
func Validate(managementID, node string) error {
	var problems []string
	if errs := validation.IsDNS1123Subdomain(node); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("node name %q: %s", node, strings.Join(errs, "; ")))
	}
	// The management identity is a label value and one dot-free segment of a ServiceAccount name: a UID fits.
	if errs := validation.IsDNS1123Label(managementID); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("management identity %q: %s", managementID, strings.Join(errs, "; ")))
	}
	if errs := validation.IsDNS1123Subdomain(WorkloadAccount(managementID, node)); len(problems) == 0 && len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("workload ServiceAccount %q: %s", WorkloadAccount(managementID, node), strings.Join(errs, "; ")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("cannot join: %s", strings.Join(problems, "; "))
	}
	return nil
}

func objectMeta(name, namespace, node string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{LabelNode: node}}
}

func clusterRoleBinding(name, node, role string, subject rbacv1.Subject) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: objectMeta(name, "", node),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{subject},
	}
}

func roleBinding(name, node, role string, subject rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: objectMeta(name, Namespace, node),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		Subjects:   []rbacv1.Subject{subject},
	}
}

func serviceAccount(name, node string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: objectMeta(name, Namespace, node)}
}

// selfToken lets a ServiceAccount request tokens for itself and nothing else: flotilla renews its own token
// through TokenRequest before it expires.
func selfToken(account, node string) (*rbacv1.Role, *rbacv1.RoleBinding) {
	role := &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: objectMeta(account, Namespace, node),
		Rules:      credentials.SelfTokenRules(account),
	}
	return role, roleBinding(account, node, account, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: account, Namespace: Namespace})
}

// ManagementObjects are what one virtual node needs in the management cluster besides the shared manifests
// and its credentials: the bindings of its node user (the roles kubelets never need, the renewal of its own
// certificate, which kube-controller-manager approves for nodes bound to the selfnodeclient role) and its
// failover identity, which also holds the leader Lease of its replicas (NodeRestriction keeps nodes out of
// every Lease outside kube-node-lease).
func ManagementObjects(node string) []any {
	user := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: NodeUser(node)}
	failover := FailoverAccount(node)
	tokenRole, tokenBinding := selfToken(failover, node)
	return []any{
		clusterRoleBinding("flotilla-node:"+node, node, nodeRole, user),
		selfRenewal(node),
		serviceAccount(failover, node),
		clusterRoleBinding(failover, node, failoverRole, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: failover, Namespace: Namespace}),
		roleBinding(failover+"-leader", node, leaderRole, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: failover, Namespace: Namespace}),
		tokenRole, tokenBinding,
	}
}

// WorkloadObjects are flotilla's identity in the workload cluster and its bindings. The ServiceAccount does
// not carry flotilla.io/management: that label marks what flotilla made for delegates, which its clean-up
// collects once unused.
func WorkloadObjects(managementID, node string) []any {
	account := WorkloadAccount(managementID, node)
	tokenRole, tokenBinding := selfToken(account, node)
	return []any{
		serviceAccount(account, node),
		clusterRoleBinding(account, node, workloadRole, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: account, Namespace: Namespace}),
		tokenRole, tokenBinding,
	}
}

// selfRenewal lets the node renew its own client certificate without an admin.
func selfRenewal(node string) *rbacv1.ClusterRoleBinding {
	b := credentials.SelfRenewalBinding(node)
	b.TypeMeta = metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"}
	b.Labels = map[string]string{LabelNode: node}
	return b
}

// kubeconfig is a kubeconfig of one user: a client certificate, or a bearer token.
func kubeconfig(server string, caPEM, certPEM, keyPEM []byte, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["flotilla"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM, Token: token}
	cfg.Contexts["flotilla"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "flotilla"}
	cfg.CurrentContext = "flotilla"
	return clientcmd.Write(*cfg)
}

// credential is what a kubeconfig of the Secret holds, as far as deciding whether to keep it goes.
type credential struct {
	server             string
	notBefore, expires time.Time
}

// stillGood says whether a credential made earlier can stay: same server, and more than half its life ahead,
// so a second join changes nothing while one run a while later renews what is about to expire.
func stillGood(c credential, server string, now time.Time) bool {
	if c.server != server || c.expires.IsZero() {
		return false
	}
	return now.Before(c.notBefore.Add(c.expires.Sub(c.notBefore) / 2))
}

// certificateCovers says whether a serving certificate is valid now and names every address and DNS name
// asked for.
func certificateCovers(certPEM []byte, ips []net.IP, dnsNames []string, now time.Time) bool {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !stillGood(credential{notBefore: cert.NotBefore, expires: cert.NotAfter}, "", now) {
		return false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	for _, name := range dnsNames {
		if !slices.Contains(cert.DNSNames, name) {
			return false
		}
	}
	return true
}
