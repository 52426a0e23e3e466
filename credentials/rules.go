// Package credentials keeps flotilla's credentials fresh without a restart, the way kubelets do: a node
// client certificate renewed through CertificateSigningRequests by client-go's certificate manager, and
// ServiceAccount tokens renewed through TokenRequest. It also issues the first node client certificate and
// the kubelet serving certificate that `flotilla join` needs.
//
// This file holds the pure rules (what a request looks like, whose certificate or token this is, when to
// renew); the files beside it do the I/O.
package credentials

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// The identity the Node authorizer and NodeRestriction recognise: user system:node:<name> in group
// system:nodes. Both halves are needed; a certificate with only the name is an ordinary user.
const (
	nodeUserPrefix = "system:node:"
	nodesGroup     = "system:nodes"
)

var (
	// The usages kube-controller-manager's kubelet signers accept: an ECDSA key needs no key encipherment
	// (the kubelet asks for it only with RSA keys).
	clientUsages  = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	servingUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
)

// nodeSubject is the subject both kubelet signers require: CN system:node:<name>, O exactly system:nodes.
func nodeSubject(node string) pkix.Name {
	return pkix.Name{CommonName: nodeUserPrefix + node, Organization: []string{nodesGroup}}
}

// clientRequest is the CSR template of a node client certificate (signer
// kubernetes.io/kube-apiserver-client-kubelet, which refuses any subject alternative name).
func clientRequest(node string) *x509.CertificateRequest {
	return &x509.CertificateRequest{Subject: nodeSubject(node)}
}

// servingRequest is the CSR template of a kubelet serving certificate (signer kubernetes.io/kubelet-serving,
// which requires at least one DNS name or IP address).
func servingRequest(node string, ips []net.IP, dnsNames []string) (*x509.CertificateRequest, error) {
	if len(ips) == 0 && len(dnsNames) == 0 {
		return nil, fmt.Errorf("a kubelet serving certificate for node %s needs at least one IP address or DNS name", node)
	}
	return &x509.CertificateRequest{Subject: nodeSubject(node), IPAddresses: ips, DNSNames: dnsNames}, nil
}

// nodeOf names the node a client certificate authenticates as, if it is a node's: the apiserver then
// takes it for user system:node:<name> in group system:nodes.
func nodeOf(cert *x509.Certificate) (string, bool) {
	node, ok := strings.CutPrefix(cert.Subject.CommonName, nodeUserPrefix)
	if !ok || node == "" {
		return "", false
	}
	for _, o := range cert.Subject.Organization {
		if o == nodesGroup {
			return node, true
		}
	}
	return "", false
}

// refusal tells whether a CSR was refused for good (Denied, or Failed by its signer) and says why in the
// words of its condition.
func refusal(csr *certificatesv1.CertificateSigningRequest) (string, bool) {
	for _, c := range csr.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case certificatesv1.CertificateDenied:
			return fmt.Sprintf("denied (%s): %s", c.Reason, c.Message), true
		case certificatesv1.CertificateFailed:
			return fmt.Sprintf("failed (%s): %s", c.Reason, c.Message), true
		}
	}
	return "", false
}

// approved tells whether someone (flotilla, or kube-controller-manager's approver) approved the CSR.
func approved(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// serviceAccountToken is what an unverified ServiceAccount token says of itself. The apiserver verifies the
// signature on every request; flotilla only needs to know whose token it is and when it ends.
type serviceAccountToken struct {
	namespace, name string
	// issued is when the token's lifetime began (iat, else nbf); zero when it says neither.
	issued time.Time
	// expires is zero for a legacy (Secret-based) token, which never expires.
	expires time.Time
}

// tokenClaims are the claims of both ServiceAccount token kinds: bound tokens (TokenRequest, projected
// volumes) carry a "kubernetes.io" object, legacy Secret-based ones flat "kubernetes.io/serviceaccount/..."
// keys. Times are JSON numbers, which a decoder may hand over as floats.
type tokenClaims struct {
	Expires   *float64 `json:"exp"`
	IssuedAt  *float64 `json:"iat"`
	NotBefore *float64 `json:"nbf"`
	Bound     *struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
	LegacyNamespace string `json:"kubernetes.io/serviceaccount/namespace"`
	LegacyName      string `json:"kubernetes.io/serviceaccount/service-account.name"`
}

// parseServiceAccountToken reads a bearer token's claims without verifying them; ok is false for anything
// that is not a ServiceAccount JWT (an OIDC token, a static token, garbage).
func parseServiceAccountToken(token string) (serviceAccountToken, bool) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return serviceAccountToken{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return serviceAccountToken{}, false
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return serviceAccountToken{}, false
	}
	var t serviceAccountToken
	switch {
	case c.Bound != nil:
		t.namespace, t.name = c.Bound.Namespace, c.Bound.ServiceAccount.Name
	default:
		t.namespace, t.name = c.LegacyNamespace, c.LegacyName
	}
	if t.namespace == "" || t.name == "" {
		return serviceAccountToken{}, false
	}
	t.expires = unixTime(c.Expires)
	if t.issued = unixTime(c.IssuedAt); t.issued.IsZero() {
		t.issued = unixTime(c.NotBefore)
	}
	return t, true
}

func unixTime(seconds *float64) time.Time {
	if seconds == nil {
		return time.Time{}
	}
	return time.Unix(int64(*seconds), 0)
}

// renewalTime is when a token living from issued to expires is renewed: after the given fraction of its
// lifetime (the kubelet renews projected tokens at 80%), so a failed renewal has the rest to be retried.
func renewalTime(issued, expires time.Time, fraction float64) time.Time {
	return issued.Add(time.Duration(float64(expires.Sub(issued)) * fraction))
}
