package tenancy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// now is the collector's clock in the clean-up tests; old is an age clean-up may act on, and created says
// when a fixture was created.
var (
	now     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	old     = now.Add(-time.Hour)
	created = func(t time.Time) metav1.Time { return metav1.NewTime(t) }
)

func TestNamespaceUnused(t *testing.T) {
	at := func(ns *corev1.Namespace, t time.Time) *corev1.Namespace {
		ns.CreationTimestamp = created(t)
		return ns
	}
	owned := func() *corev1.Namespace {
		return at(namespace("shop", map[string]string{LabelManagement: id, "pod-security.kubernetes.io/enforce": "baseline"}), old)
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
		{name: "someone's pod keeps it: it would go with the namespace",
			ns: owned(), workloadPods: []corev1.Pod{workloadPod(nil)}},
		{name: "another management cluster's pod keeps it",
			ns: owned(), workloadPods: []corev1.Pod{workloadPod(map[string]string{LabelManagement: "mgmt-2"})}},
		{name: "a management pod bound to a virtual node keeps it (its delegate may be on its way)",
			ns: owned(), managementPods: []corev1.Pod{managementPod("eu-west-3-1")}},
		{name: "a management pod bound to another cluster's virtual node keeps it too",
			ns: owned(), managementPods: []corev1.Pod{managementPod("us-west-2-0")}},
		{name: "management pods on real nodes or unscheduled do not keep it",
			ns: owned(), managementPods: []corev1.Pod{managementPod("worker-1"), managementPod("")}, want: true},
		{name: "a namespace just created is kept (its delegate may be on its way)", ns: at(owned(), now.Add(-time.Second))},
		{name: "one just younger than the grace is kept", ns: at(owned(), now.Add(-CollectionGrace+time.Second))},
		{name: "one as old as the grace goes", ns: at(owned(), now.Add(-CollectionGrace)), want: true},
		{name: "one created after now (a clock behind the apiserver's) is kept", ns: at(owned(), now.Add(time.Minute))},
		{name: "one without a creation time is kept", ns: at(owned(), time.Time{})},
		{name: "an opened namespace never goes, even one flotilla created",
			ns: at(namespace("shop", map[string]string{LabelManagement: id, LabelOpen: "true"}), old)},
		{name: "an unlabelled namespace never goes", ns: at(namespace("shop", nil), old)},
		{name: "another management cluster's never goes", ns: at(namespace("shop", map[string]string{LabelManagement: "mgmt-2"}), old)},
		{name: "a system namespace never goes, whatever its labels", ns: at(namespace("kube-public", map[string]string{LabelManagement: id}), old)},
		{name: "one being deleted is left to finish", ns: func() *corev1.Namespace {
			ns := owned()
			ns.DeletionTimestamp = &metav1.Time{}
			return ns
		}()},
		{name: "no namespace, nothing to delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NamespaceUnused(id, tc.ns, tc.workloadPods, tc.managementPods, virtual, now)
			if got != tc.want {
				t.Errorf("NamespaceUnused = %v, want %v", got, tc.want)
			}
			// Monotone: asked with fewer uses (as the collector does before it reads them all), the rule
			// never says keep where all of them say it may go.
			if got && (!NamespaceUnused(id, tc.ns, nil, nil, nil, now) || !NamespaceUnused(id, tc.ns, tc.workloadPods, nil, nil, now)) {
				t.Error("fewer uses keep a namespace that all of them let go")
			}
		})
	}
	t.Run("an empty management identity owns nothing", func(t *testing.T) {
		if NamespaceUnused("", at(namespace("shop", map[string]string{LabelManagement: ""}), old), nil, nil, virtual, now) {
			t.Error("an empty identity may delete")
		}
	})
}

func TestUnusedServiceAccounts(t *testing.T) {
	sa := func(name string, labels map[string]string) corev1.ServiceAccount {
		return corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels, CreationTimestamp: created(old)}}
	}
	ours := map[string]string{LabelManagement: id}
	createdAt := func(t time.Time) corev1.ServiceAccount {
		a := sa("web", ours)
		a.CreationTimestamp = created(t)
		return a
	}
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
		{name: "one just created is kept: its delegate is on its way",
			accounts: []corev1.ServiceAccount{createdAt(now.Add(-time.Second))}},
		{name: "one just younger than the grace is kept",
			accounts: []corev1.ServiceAccount{createdAt(now.Add(-CollectionGrace + time.Second))}},
		{name: "one as old as the grace goes",
			accounts: []corev1.ServiceAccount{createdAt(now.Add(-CollectionGrace))}, want: []string{"web"}},
		{name: "one created after now (a clock behind the apiserver's) is kept",
			accounts: []corev1.ServiceAccount{createdAt(now.Add(time.Minute))}},
		{name: "one without a creation time is kept", accounts: []corev1.ServiceAccount{createdAt(time.Time{})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range UnusedServiceAccounts(id, tc.accounts, tc.pods, now) {
				got = append(got, a.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("unused accounts differ (-want +got):\n%s", diff)
			}
			// Monotone: the candidates without pods include the answer with them.
			candidates := map[string]bool{}
			for _, a := range UnusedServiceAccounts(id, tc.accounts, nil, now) {
				candidates[a.Name] = true
			}
			for _, name := range got {
				if !candidates[name] {
					t.Errorf("%s goes with pods but is no candidate without them", name)
				}
			}
		})
	}
}
