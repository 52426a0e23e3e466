package lab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// authority is the lab's certificate authority. One authority signs every serving and client certificate of
// one lab: apiservers trust it for client certificates, clients trust it for serving certificates. Clusters
// stay apart through RBAC, as they would with one corporate CA.
type authority struct {
	cert    *x509.Certificate
	key     crypto.Signer
	CertPEM []byte
	dir     string
}

// keyPair is a certificate and key written to disk.
type keyPair struct {
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
}

func newAuthority(dir string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "flotilla-lab-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	ca := &authority{cert: cert, key: key, CertPEM: pemBlock("CERTIFICATE", der), dir: dir}
	if err := writeFile(ca.KeyFile(), pemBlock("PRIVATE KEY", keyDER)); err != nil {
		return nil, err
	}
	return ca, writeFile(ca.CertFile(), ca.CertPEM)
}

func (ca *authority) CertFile() string { return filepath.Join(ca.dir, "ca.crt") }

// KeyFile is the CA's private key: the controller-managers sign CertificateSigningRequests with it, as a
// kubeadm cluster's do with its CA.
func (ca *authority) KeyFile() string { return filepath.Join(ca.dir, "ca.key") }

// serving issues a TLS server certificate for 127.0.0.1 and any further addresses given.
func (ca *authority) serving(name string, ips ...net.IP) (*keyPair, error) {
	return ca.issue(name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: append([]net.IP{net.ParseIP("127.0.0.1")}, ips...),
	})
}

// client issues a client certificate: the apiservers map CN to the user name and O to groups.
func (ca *authority) client(file, user string, groups ...string) (*keyPair, error) {
	return ca.issue(file, &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *authority) issue(name string, tmpl *x509.Certificate) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("issuing %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{
		CertFile: filepath.Join(ca.dir, name+".crt"),
		KeyFile:  filepath.Join(ca.dir, name+".key"),
		CertPEM:  pemBlock("CERTIFICATE", der),
		KeyPEM:   pemBlock("PRIVATE KEY", keyDER),
	}
	if err := writeFile(kp.CertFile, kp.CertPEM); err != nil {
		return nil, err
	}
	return kp, writeFile(kp.KeyFile, kp.KeyPEM)
}

// serviceAccountKey writes the RSA key pair an apiserver signs service-account tokens with and the
// controller-manager's token controller uses.
func serviceAccountKey(dir, name string) (privateFile, publicFile string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	privateFile, publicFile = filepath.Join(dir, name+"-sa.key"), filepath.Join(dir, name+"-sa.pub")
	if err := writeFile(privateFile, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))); err != nil {
		return "", "", err
	}
	return privateFile, publicFile, writeFile(publicFile, pemBlock("PUBLIC KEY", pub))
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}
