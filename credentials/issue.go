package credentials

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/client-go/util/retry"
)

// ApprovalReason is the reason of the Approved condition flotilla puts on the CSRs it issues, so an admin
// reading them sees who approved.
const ApprovalReason = "FlotillaJoin"

// signingTimeout bounds the wait for a signer once a CSR is approved. kube-controller-manager signs within
// a second; a cluster whose signer ignores the request (EKS for kubelet-serving CSRs of nodes that are not
// EC2 instances) would otherwise keep the caller waiting forever.
const signingTimeout = 30 * time.Second

// ErrServingSignerRefused says the cluster refused, or never got round to, signing a kubelet serving
// certificate for the node; the caller may fall back to a certificate of its own.
var ErrServingSignerRefused = errors.New("the cluster does not sign kubelet serving certificates for this node")

// SelfRenewalClusterRole is the bootstrap ClusterRole whose holders' renewal CSRs kube-controller-manager
// approves by itself (a node client CSR of one's own name).
const SelfRenewalClusterRole = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"

// SelfRenewalBinding binds SelfRenewalClusterRole to the node's user, so NodeCertificate's renewals are
// approved without an admin. `flotilla join` creates it.
func SelfRenewalBinding(node string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "flotilla:selfnodeclient:" + node},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: SelfRenewalClusterRole},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: nodeUserPrefix + node}},
	}
}

// IssueNodeClientCertificate obtains a client certificate for user system:node:<node> (group
// system:nodes): a CSR of signer kubernetes.io/kube-apiserver-client-kubelet created and approved with the
// admin's rights, then signed by the cluster. It returns the certificate and its new ECDSA P-256 key, in PEM.
func IssueNodeClientCertificate(ctx context.Context, admin kubernetes.Interface, node string) (certPEM, keyPEM []byte, err error) {
	certPEM, keyPEM, name, err := issue(ctx, admin, admin, node, clientRequest(node), certificatesv1.KubeAPIServerClientKubeletSignerName, clientUsages)
	var notSigned *notSignedError
	if errors.As(err, &notSigned) {
		return nil, nil, fmt.Errorf("node client certificate for system:node:%s: CSR %s %s", node, name, notSigned.detail)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("node client certificate for system:node:%s: %w", node, err)
	}
	return certPEM, keyPEM, nil
}

// IssueKubeletServingCertificate obtains the serving certificate of the node's kubelet API for the given
// addresses: a CSR of signer kubernetes.io/kubelet-serving, which must come from the node itself (nodeClient,
// acting as system:node:<nodeName>), approved with the admin's rights. A CSR the cluster denies, fails or
// leaves unsigned for 30 s is an error wrapping ErrServingSignerRefused.
func IssueKubeletServingCertificate(ctx context.Context, admin, nodeClient kubernetes.Interface, nodeName string, ips []net.IP, dnsNames []string) (certPEM, keyPEM []byte, err error) {
	tmpl, err := servingRequest(nodeName, ips, dnsNames)
	if err != nil {
		return nil, nil, err
	}
	certPEM, keyPEM, name, err := issue(ctx, nodeClient, admin, nodeName, tmpl, certificatesv1.KubeletServingSignerName, servingUsages)
	var notSigned *notSignedError
	if errors.As(err, &notSigned) {
		return nil, nil, fmt.Errorf("kubelet serving certificate for node %s: %w: CSR %s %s", nodeName, ErrServingSignerRefused, name, notSigned.detail)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kubelet serving certificate for node %s: %w", nodeName, err)
	}
	return certPEM, keyPEM, nil
}

// notSignedError is a CSR that will not be signed: refused, or left unsigned past signingTimeout.
type notSignedError struct{ detail string }

func (e *notSignedError) Error() string { return e.detail }

// issue creates a CSR for a fresh key as requester, approves it as admin and waits for its certificate. It
// returns the CSR's name for the caller's messages.
func issue(ctx context.Context, requester, admin kubernetes.Interface, node string, tmpl *x509.CertificateRequest, signer string, usages []certificatesv1.KeyUsage) (certPEM, keyPEM []byte, name string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	if keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key); err != nil {
		return nil, nil, "", err
	}
	csrPEM, err := certutil.MakeCSRFromTemplate(key, tmpl)
	if err != nil {
		return nil, nil, "", err
	}
	// A name an admin can read (whose CSR this is), unique per attempt as generateName would make it;
	// csr.RequestCertificate takes a name or falls back to an anonymous "csr-" prefix.
	name = "flotilla-" + node + "-" + utilrand.String(5)
	name, uid, err := csr.RequestCertificateWithContext(ctx, requester, csrPEM, name, signer, nil, usages, key)
	if apierrors.IsForbidden(err) {
		return nil, nil, name, fmt.Errorf("the requesting identity may not create CSRs of signer %s: %w", signer, err)
	}
	if err != nil {
		return nil, nil, name, fmt.Errorf("creating CSR of signer %s: %w", signer, err)
	}
	if err := approve(ctx, admin, name, uid); err != nil {
		if apierrors.IsForbidden(err) {
			return nil, nil, name, fmt.Errorf("the admin kubeconfig may not approve CSRs of signer %s: %w", signer, err)
		}
		return nil, nil, name, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, signingTimeout)
	defer cancel()
	certPEM, err = csr.WaitForCertificate(waitCtx, admin, name, uid)
	if err == nil {
		return certPEM, keyPEM, name, nil
	}
	if ctx.Err() != nil {
		return nil, nil, name, ctx.Err()
	}
	// The watch's error is terse; the CSR's own conditions say who refused and why.
	if current, getErr := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{}); getErr == nil {
		if why, refused := refusal(current); refused {
			return nil, nil, name, &notSignedError{why}
		}
	}
	if waitCtx.Err() != nil {
		return nil, nil, name, &notSignedError{fmt.Sprintf("was approved but not signed within %s: the cluster's signer for %s ignores it", signingTimeout, signer)}
	}
	return nil, nil, name, fmt.Errorf("waiting for CSR %s to be signed: %w", name, err)
}

// approve adds the Approved condition unless the CSR already has it: kube-controller-manager's approver
// may approve a node client CSR of an admin first, and then an update of ours would only conflict.
func approve(ctx context.Context, admin kubernetes.Interface, name string, uid types.UID) error {
	csrs := admin.CertificatesV1().CertificateSigningRequests()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := csrs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if current.UID != uid {
			return fmt.Errorf("CSR %s was replaced while being approved", name)
		}
		if why, refused := refusal(current); refused {
			return &notSignedError{why}
		}
		if approved(current) {
			return nil
		}
		current.Status.Conditions = append(current.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type:    certificatesv1.CertificateApproved,
			Status:  corev1.ConditionTrue,
			Reason:  ApprovalReason,
			Message: "approved by flotilla with the admin's rights",
		})
		_, err = csrs.UpdateApproval(ctx, name, current, metav1.UpdateOptions{})
		return err
	})
}
