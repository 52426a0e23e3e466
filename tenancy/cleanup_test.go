package tenancy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNamespaceUnused(t *testing.T) {
	owned := func() *corev1.Namespace {
		return namespace("shop", map[string]string{LabelManagement: id, "pod-security.kubernetes.io/enforce": "baseline"})
	}
	workloadPod := func(labels map[string]string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p", Labels: labels}}
	}
	managementPod := func(node string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}, Spec: corev1.PodSpec{NodeName: node}}
	}
	virtual := func(node string) bool { return node == "eu-west-3-1" || node == "us-west-2-0" }
	for _, tc := range []struct {
		name           string
		ns             *corev1.Namespace
		workloadPods   []corev1.Pod
		managementPods []corev1.Pod
		want           bool
	}{
		{name: "an owned namespace nothing uses goes", ns: owned(), want: true},
		{name: "a delegate of this management cluster keeps it",
			ns: owned(), workloadPods: []corev1.Pod{workloadPod(map[string]string{LabelManagement: id, "flotilla.io/node": "eu-west-3-1"})}},
		{name: "a delegate of another virtual node of this management cluster keeps it",
			ns: owned(), workloadPods: []corev1.Pod{workloadPod(map[string]string{LabelManagement: id, "flotilla.io/node": "eu-west-3-0"})}},
		{name: "another management cluster's or someone's pods do not keep it",
			ns:           owned(),
			workloadPods: []corev1.Pod{workloadPod(map[string]string{LabelManagement: "mgmt-2"}), workloadPod(nil)},
			want:         true},
		{name: "a management pod bound to a virtual node keeps it (its delegate may be on its way)",
			ns: owned(), managementPods: []corev1.Pod{managementPod("eu-west-3-1")}},
		{name: "a management pod bound to another cluster's virtual node keeps it too",
			ns: owned(), managementPods: []corev1.Pod{managementPod("us-west-2-0")}},
		{name: "management pods on real nodes or unscheduled do not keep it",
			ns: owned(), managementPods: []corev1.Pod{managementPod("worker-1"), managementPod("")}, want: true},
		{name: "an opened namespace never goes, even one flotilla created",
			ns: namespace("shop", map[string]string{LabelManagement: id, LabelOpen: "true"})},
		{name: "an unlabelled namespace never goes", ns: namespace("shop", nil)},
		{name: "another management cluster's never goes", ns: namespace("shop", map[string]string{LabelManagement: "mgmt-2"})},
		{name: "a system namespace never goes, whatever its labels", ns: namespace("kube-public", map[string]string{LabelManagement: id})},
		{name: "one being deleted is left to finish", ns: func() *corev1.Namespace {
			ns := owned()
			ns.DeletionTimestamp = &metav1.Time{}
			return ns
		}()},
		{name: "no namespace, nothing to delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NamespaceUnused(id, tc.ns, tc.workloadPods, tc.managementPods, virtual); got != tc.want {
				t.Errorf("NamespaceUnused = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("an empty management identity owns nothing", func(t *testing.T) {
		if NamespaceUnused("", namespace("shop", map[string]string{LabelManagement: ""}), nil, nil, virtual) {
			t.Error("an empty identity may delete")
		}
	})
}

func TestUnusedServiceAccounts(t *testing.T) {
	sa := func(name string, labels map[string]string) corev1.ServiceAccount {
		return corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels}}
	}
	ours := map[string]string{LabelManagement: id}
	pod := func(sa string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}, Spec: corev1.PodSpec{ServiceAccountName: sa}}
	}
	terminating := sa("old", ours)
	terminating.DeletionTimestamp = &metav1.Time{}
	for _, tc := range []struct {
		name     string
		accounts []corev1.ServiceAccount
		pods     []corev1.Pod
		want     []string
	}{
		{name: "an owned account no pod runs as goes", accounts: []corev1.ServiceAccount{sa("web", ours)}, want: []string{"web"}},
		{name: "a pod running as it keeps it", accounts: []corev1.ServiceAccount{sa("web", ours)}, pods: []corev1.Pod{pod("web")}},
		{name: "any pod counts, not only delegates", accounts: []corev1.ServiceAccount{sa("web", ours), sa("api", ours)},
			pods: []corev1.Pod{pod("api")}, want: []string{"web"}},
		{name: "someone else's or another management cluster's never goes",
			accounts: []corev1.ServiceAccount{sa("web", nil), sa("api", map[string]string{LabelManagement: "mgmt-2"})}},
		{name: "default never goes, even labelled",
			accounts: []corev1.ServiceAccount{sa("default", ours)}},
		{name: "a pod without a ServiceAccount runs as default, not as the others",
			accounts: []corev1.ServiceAccount{sa("web", ours)}, pods: []corev1.Pod{pod("")}, want: []string{"web"}},
		{name: "one being deleted is left alone", accounts: []corev1.ServiceAccount{terminating}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range UnusedServiceAccounts(id, tc.accounts, tc.pods) {
				got = append(got, a.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("unused accounts differ (-want +got):\n%s", diff)
			}
		})
	}
}
