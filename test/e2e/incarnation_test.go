package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/test/lab"
)

// incarnationNode is where the at-most-one tests pin their StatefulSet.
const incarnationNode = "us-west-2-0"

// TestAtMostOneIncarnation: a StatefulSet's pod deleted while its workload cluster cannot confirm that the
// delegate stopped (its kubelets partitioned, or its apiserver frozen) stays Terminating, so the StatefulSet
// starts no second db-0, until the cluster answers again; then the next db-0 runs, and at no moment did two
// incarnations exist. Both partitions last less than the failover delay: a cluster declared lost is the one
// documented exception.
func TestAtMostOneIncarnation(t *testing.T) {
	w := shared.Workload(incarnationNode)
	for _, tc := range []struct {
		name      string
		partition func(t *testing.T) (resume func())
	}{
		{"kubelets partitioned", func(t *testing.T) func() {
			if err := w.FreezeKubelets(); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			resume := func() {
				once.Do(func() {
					if err := w.ResumeKubelets(); err != nil {
						t.Error(err)
					}
				})
			}
			t.Cleanup(resume)
			return resume
		}},
		{"apiserver frozen", func(t *testing.T) func() { return freeze(t, w) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mgmt := shared.Management.Client
			ns := namespace(t, mgmt)
			t.Cleanup(func() { lab.DeleteNamespace(w.Client, ns) })
			ctx := testContext(t, 4*time.Minute)
			if _, err := mgmt.AppsV1().StatefulSets(ns).Create(ctx, statefulSet("db"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			var proxy, delegate *corev1.Pod
			eventually(t, 90*time.Second, "db-0 running in "+incarnationNode, func(ctx context.Context) (bool, string) {
				p, err := mgmt.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
				if err != nil || p.Status.Phase != corev1.PodRunning {
					return false, "proxy not Running"
				}
				d, err := w.Client.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				proxy, delegate = p, d
				return true, ""
			})

			resume := tc.partition(t)
			partitioned := time.Now()
			if err := mgmt.CoreV1().Pods(ns).Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			// Well past the 3 s grace period, well short of the cluster being declared lost (20 s after the
			// virtual node turns NotReady).
			time.Sleep(15 * time.Second)
			p, err := mgmt.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
			if err != nil || p.UID != proxy.UID || p.DeletionTimestamp == nil {
				t.Fatalf("%s after the partition: db-0 should still be the first incarnation, Terminating; got %v (err %v)", time.Since(partitioned).Round(time.Second), describePod(p), err)
			}
			t.Logf("%s after the partition db-0 is still the first incarnation, Terminating", time.Since(partitioned).Round(time.Second))

			resume()
			resumed := time.Now()
			// The next db-0 may appear in the management cluster only once the first delegate is gone.
			var next types.UID
			eventually(t, 90*time.Second, "the next db-0", func(ctx context.Context) (bool, string) {
				p, err := mgmt.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
				if err != nil || p.UID == proxy.UID {
					return false, "first incarnation still there"
				}
				d, err := w.Client.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
				switch {
				case err == nil && d.UID == delegate.UID:
					t.Fatalf("the next db-0 (%s) exists while the first delegate (%s) still does", p.UID, d.UID)
				case err != nil && !apierrors.IsNotFound(err):
					return false, err.Error()
				}
				next = p.UID
				return true, ""
			})
			eventually(t, 90*time.Second, "the next db-0 running", func(ctx context.Context) (bool, string) {
				p, err := mgmt.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
				if err != nil || p.UID != next || p.Status.Phase != corev1.PodRunning {
					return false, describePod(p)
				}
				return true, ""
			})
			t.Logf("the next db-0 ran %s after the partition ended", time.Since(resumed).Round(100*time.Millisecond))
		})
	}
}

func statefulSet(name string) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](1),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{corev1.LabelHostname: incarnationNode},
					TerminationGracePeriodSeconds: ptr.To[int64](3),
					Containers:                    []corev1.Container{{Name: "db", Image: "postgres:17"}},
				},
			},
		},
	}
}

func describePod(p *corev1.Pod) string {
	if p == nil {
		return "none"
	}
	return string(p.UID) + " " + string(p.Status.Phase) + map[bool]string{true: " Terminating", false: ""}[p.DeletionTimestamp != nil]
}
