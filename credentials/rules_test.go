package credentials

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestNodeOf(t *testing.T) {
	for _, tc := range []struct {
		name     string
		subject  pkix.Name
		wantNode string
		wantOK   bool
	}{
		{name: "a node's name in the node group is a node", subject: nodeSubject("eu-west-3-1"), wantNode: "eu-west-3-1", wantOK: true},
		{name: "other groups beside the node group do not matter", subject: pkix.Name{CommonName: "system:node:a", Organization: []string{"flotilla", "system:nodes"}}, wantNode: "a", wantOK: true},
		{name: "a node's name outside the node group is an ordinary user", subject: pkix.Name{CommonName: "system:node:a", Organization: []string{"flotilla"}}},
		{name: "the node group without a node's name is no node", subject: pkix.Name{CommonName: "flotilla:a", Organization: []string{"system:nodes"}}},
		{name: "an empty node name is no node", subject: pkix.Name{CommonName: "system:node:", Organization: []string{"system:nodes"}}},
		{name: "the prefix must start the name", subject: pkix.Name{CommonName: "x-system:node:a", Organization: []string{"system:nodes"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, ok := nodeOf(&x509.Certificate{Subject: tc.subject})
			if node != tc.wantNode || ok != tc.wantOK {
				t.Errorf("nodeOf = %q, %v; want %q, %v", node, ok, tc.wantNode, tc.wantOK)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	if got, want := clientRequest("n1"), (&x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}}}); !cmp.Equal(got, want) {
		t.Errorf("clientRequest: %s", cmp.Diff(want, got))
	}
	ips := []net.IP{net.ParseIP("10.0.0.7")}
	got, err := servingRequest("n1", ips, []string{"n1.example"})
	want := &x509.CertificateRequest{Subject: nodeSubject("n1"), IPAddresses: ips, DNSNames: []string{"n1.example"}}
	if err != nil || !cmp.Equal(got, want) {
		t.Errorf("servingRequest: %v %s", err, cmp.Diff(want, got))
	}
	// kube-controller-manager's kubelet-serving signer fails a CSR without a subject alternative name;
	// saying so before a CSR exists names the caller's mistake.
	if _, err := servingRequest("n1", nil, nil); err == nil {
		t.Error("servingRequest without addresses: no error")
	}
}

func TestRefusal(t *testing.T) {
	cond := func(typ certificatesv1.RequestConditionType, status corev1.ConditionStatus, reason, message string) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: typ, Status: status, Reason: reason, Message: message}
	}
	for _, tc := range []struct {
		name         string
		conditions   []certificatesv1.CertificateSigningRequestCondition
		want         string
		wantRefused  bool
		wantApproved bool
	}{
		{name: "a new CSR is neither"},
		{name: "approved is not refused", conditions: []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateApproved, corev1.ConditionTrue, "FlotillaJoin", "")}, wantApproved: true},
		{name: "denied says who and why", conditions: []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateDenied, corev1.ConditionTrue, "NotOurs", "no EC2 instance")}, want: "denied (NotOurs): no EC2 instance", wantRefused: true},
		{name: "failed after approval is refused", conditions: []certificatesv1.CertificateSigningRequestCondition{
			cond(certificatesv1.CertificateApproved, corev1.ConditionTrue, "FlotillaJoin", ""),
			cond(certificatesv1.CertificateFailed, corev1.ConditionTrue, "SignerValidationFailure", "DNS or IP subjectAltName is required"),
		}, want: "failed (SignerValidationFailure): DNS or IP subjectAltName is required", wantRefused: true, wantApproved: true},
		{name: "a condition that is not True counts for nothing", conditions: []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateDenied, corev1.ConditionFalse, "X", "")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{Status: certificatesv1.CertificateSigningRequestStatus{Conditions: tc.conditions}}
			got, refused := refusal(csr)
			if got != tc.want || refused != tc.wantRefused {
				t.Errorf("refusal = %q, %v; want %q, %v", got, refused, tc.want, tc.wantRefused)
			}
			if a := approved(csr); a != tc.wantApproved {
				t.Errorf("approved = %v, want %v", a, tc.wantApproved)
			}
		})
	}
}

// jwt is an unsigned token with the given claims: parsing never looks at the signature.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(claims)) + ".c2ln"
}

func TestParseServiceAccountToken(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(s, 0) }
	for _, tc := range []struct {
		name   string
		token  string
		want   serviceAccountToken
		wantOK bool
	}{
		{
			name:   "a bound token names its ServiceAccount and lifetime",
			token:  jwt(`{"aud":["https://kubernetes.default.svc"],"exp":1700000600,"iat":1700000000,"nbf":1700000000,"kubernetes.io":{"namespace":"flotilla-system","serviceaccount":{"name":"flotilla","uid":"u"}},"sub":"system:serviceaccount:flotilla-system:flotilla"}`),
			want:   serviceAccountToken{namespace: "flotilla-system", name: "flotilla", issued: at(1700000000), expires: at(1700000600)},
			wantOK: true,
		},
		{
			name:   "without iat, nbf starts the lifetime",
			token:  jwt(`{"exp":1700000600,"nbf":1700000100,"kubernetes.io":{"namespace":"ns","serviceaccount":{"name":"sa"}}}`),
			want:   serviceAccountToken{namespace: "ns", name: "sa", issued: at(1700000100), expires: at(1700000600)},
			wantOK: true,
		},
		{
			name:   "a legacy token names its ServiceAccount and never expires",
			token:  jwt(`{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"ns","kubernetes.io/serviceaccount/service-account.name":"sa","kubernetes.io/serviceaccount/secret.name":"sa-token"}`),
			want:   serviceAccountToken{namespace: "ns", name: "sa"},
			wantOK: true,
		},
		{name: "an OIDC token is not a ServiceAccount's", token: jwt(`{"iss":"https://accounts.example","sub":"alice","exp":1700000600}`)},
		{name: "a bound claim without a name is not a ServiceAccount's", token: jwt(`{"exp":1700000600,"kubernetes.io":{"namespace":"ns"}}`)},
		{name: "a static token is no JWT", token: "31ada4fd-adec-460c-809a-9e56ceb75269"},
		{name: "a payload that is not base64", token: "a.!!!.c"},
		{name: "a payload that is not JSON", token: "a." + base64.RawURLEncoding.EncodeToString([]byte("hello")) + ".c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseServiceAccountToken(tc.token)
			if ok != tc.wantOK || !cmp.Equal(got, tc.want, cmp.AllowUnexported(serviceAccountToken{})) {
				t.Errorf("parse = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestRenewalTime(t *testing.T) {
	issued := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		lifetime time.Duration
		fraction float64
		want     time.Duration
	}{
		{name: "an hour's token at 80% is renewed after 48 minutes", lifetime: time.Hour, fraction: 0.8, want: 48 * time.Minute},
		{name: "the apiserver's shortest token at 80% after 8 minutes", lifetime: 10 * time.Minute, fraction: 0.8, want: 8 * time.Minute},
		{name: "a small fraction renews within seconds", lifetime: 10 * time.Minute, fraction: 0.005, want: 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := renewalTime(issued, issued.Add(tc.lifetime), tc.fraction); !got.Equal(issued.Add(tc.want)) {
				t.Errorf("renewalTime = %s after issue, want %s", got.Sub(issued), tc.want)
			}
		})
	}
}
