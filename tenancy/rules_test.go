package tenancy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

const id = "mgmt-1"

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		ns   *corev1.Namespace
		want bool
	}{
		{name: "labelled true takes part", ns: namespace("shop", map[string]string{LabelEnabled: "true"}), want: true},
		{name: "no label does not", ns: namespace("shop", nil)},
		{name: "only the value true counts", ns: namespace("shop", map[string]string{LabelEnabled: "yes"})},
		{name: "case matters, as for every label value", ns: namespace("shop", map[string]string{LabelEnabled: "True"})},
		{name: "an empty value is not true", ns: namespace("shop", map[string]string{LabelEnabled: ""})},
		{name: "an unknown namespace does not", ns: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Enabled(tc.ns); got != tc.want {
				t.Errorf("Enabled = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, ns := range []*corev1.Namespace{
		namespace("shop", map[string]string{LabelEnabled: "true"}),
		namespace("kube-system", nil),
	} {
		if err := indexer.Add(ns); err != nil {
			t.Fatal(err)
		}
	}
	n := &Namespaces{Management: corev1listers.NewNamespaceLister(indexer), ManagementID: id}
	for _, tc := range []struct {
		name, ns           string
		wantEnabled, known bool
	}{
		{name: "an enabled namespace", ns: "shop", wantEnabled: true, known: true},
		{name: "a namespace that is not enabled", ns: "kube-system", known: true},
		{name: "a namespace the cache does not hold is not known", ns: "not-synced-yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enabled, known := n.Lookup(tc.ns)
			if enabled != tc.wantEnabled || known != tc.known {
				t.Errorf("Lookup = %v, %v; want %v, %v", enabled, known, tc.wantEnabled, tc.known)
			}
			if n.Enabled(tc.ns) != tc.wantEnabled {
				t.Errorf("Enabled disagrees with Lookup")
			}
		})
	}
}

func TestWorkloadLevel(t *testing.T) {
	enforcing := func(level string) *corev1.Namespace {
		return namespace("shop", map[string]string{LabelEnabled: "true", "pod-security.kubernetes.io/enforce": level})
	}
	for _, tc := range []struct {
		name       string
		floor      string
		management *corev1.Namespace
		want       string
	}{
		{name: "the floor when the management namespace says nothing", floor: "baseline", management: namespace("shop", nil), want: "baseline"},
		{name: "the floor when the management namespace is unknown", floor: "baseline", want: "baseline"},
		{name: "no floor is the default, baseline", management: namespace("shop", nil), want: DefaultLevel},
		{name: "a stricter management level wins", floor: "baseline", management: enforcing("restricted"), want: "restricted"},
		{name: "a looser management level does not lower the floor", floor: "baseline", management: enforcing("privileged"), want: "baseline"},
		{name: "an equal level", floor: "restricted", management: enforcing("restricted"), want: "restricted"},
		{name: "a privileged floor takes the management level", floor: "privileged", management: enforcing("baseline"), want: "baseline"},
		{name: "a privileged floor alone", floor: "privileged", management: namespace("shop", nil), want: "privileged"},
		{name: "an unparsable management level is restricted, as Pod Security admission enforces it", floor: "baseline", management: enforcing("Baseline"), want: "restricted"},
		{name: "an empty management level is unparsable too", floor: "privileged", management: enforcing(""), want: "restricted"},
		{name: "an unparsable floor fails closed", floor: "strict", management: namespace("shop", nil), want: "restricted"},
		{name: "only enforce counts, not warn or audit", floor: "baseline",
			management: namespace("shop", map[string]string{"pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted"}),
			want:       "baseline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WorkloadLevel(tc.floor, tc.management); got != tc.want {
				t.Errorf("WorkloadLevel = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ns       string
		existing *corev1.Namespace
		want     Access
		why      string // part of the reason, for Forbidden
	}{
		{name: "a missing namespace is created", ns: "shop", want: Create},
		{name: "one flotilla created for this management cluster is owned", ns: "shop",
			existing: namespace("shop", map[string]string{LabelManagement: id}), want: Owned},
		{name: "one the admin opened is used as it is", ns: "default",
			existing: namespace("default", map[string]string{LabelOpen: "true"}), want: Opened},
		{name: "opened wins over owned: the admin took it over", ns: "shop",
			existing: namespace("shop", map[string]string{LabelManagement: id, LabelOpen: "true"}), want: Opened},
		{name: "another management cluster's namespace, opened to flotilla, is opened", ns: "shop",
			existing: namespace("shop", map[string]string{LabelManagement: "mgmt-2", LabelOpen: "true"}), want: Opened},
		{name: "another management cluster's namespace is forbidden", ns: "shop",
			existing: namespace("shop", map[string]string{LabelManagement: "mgmt-2"}), want: Forbidden, why: "another management cluster (mgmt-2)"},
		{name: "someone else's namespace is forbidden", ns: "shop",
			existing: namespace("shop", nil), want: Forbidden, why: "was not opened to flotilla"},
		{name: "only the value true opens", ns: "shop",
			existing: namespace("shop", map[string]string{LabelOpen: "yes"}), want: Forbidden, why: "flotilla.io/open=true"},
		{name: "kube-system is forbidden whatever its labels", ns: "kube-system",
			existing: namespace("kube-system", map[string]string{LabelOpen: "true", LabelManagement: id}), want: Forbidden, why: "own components"},
		{name: "kube-public is forbidden even when missing", ns: "kube-public", want: Forbidden, why: "own components"},
		{name: "kube-node-lease is forbidden", ns: "kube-node-lease",
			existing: namespace("kube-node-lease", map[string]string{LabelOpen: "true"}), want: Forbidden, why: "own components"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Decide(tc.ns, tc.existing, id)
			if got != tc.want {
				t.Errorf("Decide = %v (%q), want %v", got, why, tc.want)
			}
			if tc.want == Forbidden && !strings.Contains(why, tc.why) {
				t.Errorf("reason %q does not say %q", why, tc.why)
			}
			if tc.want != Forbidden && why != "" {
				t.Errorf("a reason without a refusal: %q", why)
			}
		})
	}
	t.Run("an empty management identity owns nothing", func(t *testing.T) {
		if got, _ := Decide("shop", namespace("shop", nil), ""); got == Owned {
			t.Error("an unlabelled namespace is owned by an empty identity")
		}
	})
}

func TestDesired(t *testing.T) {
	ns := Desired("shop", id, "restricted")
	want := map[string]string{
		LabelManagement:                              id,
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}
	if ns.Name != "shop" || len(ns.Labels) != len(want) {
		t.Fatalf("Desired = %v", ns)
	}
	for k, v := range want {
		if ns.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, ns.Labels[k], v)
		}
	}
	if !levelCurrent(ns, "restricted") || levelCurrent(ns, "baseline") {
		t.Error("levelCurrent disagrees with Desired")
	}
}

func TestServiceAccountUsable(t *testing.T) {
	sa := func(name string, labels map[string]string) *corev1.ServiceAccount {
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels}}
	}
	for _, tc := range []struct {
		name   string
		saName string
		sa     *corev1.ServiceAccount
		id     string
		want   bool
	}{
		{name: "a missing one is created by flotilla", saName: "web", want: true},
		{name: "flotilla's, for this management cluster", saName: "web", sa: sa("web", map[string]string{LabelManagement: id}), want: true},
		{name: "someone else's is not", saName: "web", sa: sa("web", nil)},
		{name: "another management cluster's is not", saName: "web", sa: sa("web", map[string]string{LabelManagement: "mgmt-2"})},
		{name: "the workload's own default is", saName: "default", sa: sa("default", nil), want: true},
		{name: "a powerful workload account of another name is not", saName: "cluster-admin-sa", sa: sa("cluster-admin-sa", map[string]string{"team": "ops"})},
		{name: "an empty identity owns nothing", saName: "web", sa: sa("web", map[string]string{LabelManagement: ""}), id: "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			managementID := id
			if tc.id == "-" {
				managementID = ""
			}
			if got := ServiceAccountUsable(tc.saName, tc.sa, managementID); got != tc.want {
				t.Errorf("ServiceAccountUsable = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	for in, ok := range map[string]bool{"privileged": true, "baseline": true, "restricted": true, "Baseline": false, "": false} {
		got, err := ParseLevel(in)
		if (err == nil) != ok || (ok && got != in) {
			t.Errorf("ParseLevel(%q) = %q, %v", in, got, err)
		}
	}
}
