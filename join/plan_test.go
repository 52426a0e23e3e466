package join

import (
	"net"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	certutil "k8s.io/client-go/util/cert"
)

func TestValidate(t *testing.T) {
	uid := "c8d4332a-84a9-4162-917f-f116503f0abe"
	for _, tc := range []struct {
		name, management, node string
		ok                     bool
	}{
		{"a UID and a cluster name", uid, "eu-west-3-1", true},
		{"a node name with dots", uid, "eu.west.3", true},
		{"a management identity with a dot would make the owner ambiguous", "a.b", "c", false},
		{"an upper-case node name", uid, "EU", false},
		{"no node name", uid, "", false},
		{"no management identity", "", "eu-west-3-1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Validate(tc.management, tc.node); (err == nil) != tc.ok {
				t.Errorf("Validate(%q, %q) = %v, want ok %v", tc.management, tc.node, err, tc.ok)
			}
		})
	}
}

func TestStillGood(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	week := credential{server: "https://m", notBefore: start, expires: start.Add(7 * 24 * time.Hour)}
	for _, tc := range []struct {
		name   string
		c      credential
		server string
		now    time.Time
		want   bool
	}{
		{"fresh", week, "https://m", start.Add(time.Hour), true},
		{"just before half its life", week, "https://m", start.Add(84*time.Hour - time.Second), true},
		{"past half its life: renewed", week, "https://m", start.Add(84 * time.Hour), false},
		{"another server", week, "https://other", start.Add(time.Hour), false},
		{"no expiry known", credential{server: "https://m"}, "https://m", start, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stillGood(tc.c, tc.server, tc.now); got != tc.want {
				t.Errorf("stillGood = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCertificateCovers(t *testing.T) {
	certPEM, _, err := certutil.GenerateSelfSignedCertKey("vn", []net.IP{net.ParseIP("10.0.0.1")}, []string{"vn.example"})
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := certutil.ParseCertsPEM(certPEM)
	leaf := certs[0]
	now := leaf.NotBefore.Add(time.Hour)
	for _, tc := range []struct {
		name string
		ips  []net.IP
		dns  []string
		now  time.Time
		want bool
	}{
		{"names what is asked", []net.IP{net.ParseIP("10.0.0.1")}, []string{"vn.example"}, now, true},
		{"another address", []net.IP{net.ParseIP("10.0.0.2")}, nil, now, false},
		{"another DNS name", nil, []string{"other.example"}, now, false},
		{"past half its life", nil, nil, leaf.NotAfter.Add(-time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := certificateCovers(certPEM, tc.ips, tc.dns, tc.now); got != tc.want {
				t.Errorf("certificateCovers = %v, want %v", got, tc.want)
			}
		})
	}
	if certificateCovers([]byte("not a certificate"), nil, nil, now) {
		t.Error("garbage covers nothing")
	}
}

// The bindings give the node user and the failover account their roles, and nothing to anyone else.
func TestObjects(t *testing.T) {
	subjects := map[string]string{}
	for _, obj := range ManagementObjects("eu-west-3-1") {
		switch o := obj.(type) {
		case *rbacv1.ClusterRoleBinding:
			subjects[o.Name] = o.Subjects[0].Name + "→" + o.RoleRef.Name
		case *rbacv1.RoleBinding:
			subjects[o.Namespace+"/"+o.Name] = o.Subjects[0].Name + "→" + o.RoleRef.Name
		}
	}
	want := map[string]string{
		"flotilla-node:eu-west-3-1":                            "system:node:eu-west-3-1→flotilla-node",
		"flotilla:selfnodeclient:eu-west-3-1":                  "system:node:eu-west-3-1→system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
		"flotilla-system/flotilla-failover-eu-west-3-1-leader": "flotilla-failover-eu-west-3-1→flotilla-leader-election",
		"flotilla-failover-eu-west-3-1":                        "flotilla-failover-eu-west-3-1→flotilla-failover",
		"flotilla-system/flotilla-failover-eu-west-3-1":        "flotilla-failover-eu-west-3-1→flotilla-failover-eu-west-3-1",
	}
	if len(subjects) != len(want) {
		t.Errorf("bindings %v, want %v", subjects, want)
	}
	for name, w := range want {
		if subjects[name] != w {
			t.Errorf("binding %s: %q, want %q", name, subjects[name], w)
		}
	}
	if got := WorkloadAccount("uid", "eu-west-3-1"); got != "flotilla.uid.eu-west-3-1" {
		t.Errorf("WorkloadAccount = %q", got)
	}
}
