package follow

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// TestConfinedWorkloadIdentity: with the workload identity of a joined flotilla (a ServiceAccount bound to
// deploy's ClusterRole flotilla-workload only, confined by deploy's admission policy), which may not read
// copies cluster-wide, a ConfigMap and a Secret follow into a namespace flotilla creates and into one opened to
// it: flotilla grants itself the read there (RoleBinding to flotilla-namespace-reader), its copies' informers
// of that namespace see the copies, a change of a source reaches its copy, and a copy someone deletes is made
// anew.
func TestConfinedWorkloadIdentity(t *testing.T) {
	for _, tc := range []struct {
		name              string
		workloadNamespace map[string]string // nil: flotilla creates it
	}{
		{name: "a namespace flotilla creates"},
		{name: "a namespace opened to flotilla", workloadNamespace: map[string]string{tenancy.LabelOpen: "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string][]byte{"p": []byte("v1")}}
			spec := envFrom("app", false)
			spec.Volumes = []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}}
			fx := newFixtureWith(t, fixtureOptions{
				management:        []runtime.Object{configMap("app", map[string]string{"a": "1"}), creds},
				workloadNamespace: tc.workloadNamespace,
				confined:          true,
			})
			// The identity is confined: no cluster-wide read of Secrets (so this test cannot pass by a grant
			// it should not have).
			if _, err := fx.f.cfg.Workload.CoreV1().Secrets(metav1.NamespaceAll).List(fx.ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
				t.Fatalf("the confined identity's list of Secrets cluster-wide: %v, want Forbidden", err)
			}
			fx.run()
			pod := fx.bind(proxyPod("p", nil, spec))
			if drop, err := fx.f.EnsureFor(fx.ctx, pod); err != nil || drop != nil {
				t.Fatalf("EnsureFor = %v, %v", drop, err)
			}
			cms, secrets := fx.workload.CoreV1().ConfigMaps(fx.ns), fx.workload.CoreV1().Secrets(fx.ns)
			grant, err := fx.workload.RbacV1().RoleBindings(fx.ns).Get(fx.ctx, tenancy.WorkloadAccount("m1", fx.node), metav1.GetOptions{})
			if err != nil || grant.RoleRef.Name != tenancy.NamespaceReaderRole {
				t.Fatalf("flotilla's read grant in %s: %+v, %v", fx.ns, grant, err)
			}

			// The copies reach this node's cache of the namespace.
			lab.Poll(t, limit, "the copies in the cache of the workload namespace", func() (bool, error) {
				_, cm := fx.f.configMaps.copy(fx.ns, "app")
				_, s := fx.f.secrets.copy(fx.ns, "creds")
				return cm && s, fx.f.copyInformers.known(fx.ns)
			})

			// A change of each source reaches its copy.
			if _, err := fx.management.CoreV1().ConfigMaps(fx.ns).Patch(fx.ctx, "app", types.MergePatchType, []byte(`{"data":{"a":"2"}}`), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := fx.management.CoreV1().Secrets(fx.ns).Patch(fx.ctx, "creds", types.MergePatchType, []byte(`{"data":{"p":"djI="}}`), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			expectCopies := func(what, a, p string, not map[string]types.UID) map[string]types.UID {
				t.Helper()
				uids := map[string]types.UID{}
				lab.Poll(t, limit, what, func() (bool, error) {
					cm, err := cms.Get(fx.ctx, "app", metav1.GetOptions{})
					if err != nil {
						return false, err
					}
					s, err := secrets.Get(fx.ctx, "creds", metav1.GetOptions{})
					if err != nil {
						return false, err
					}
					uids["app"], uids["creds"] = cm.UID, s.UID
					return cm.Data["a"] == a && string(s.Data["p"]) == p && cm.UID != not["app"] && s.UID != not["creds"],
						fmt.Errorf("configmap %v (uid %s), secret %q (uid %s)", cm.Data, cm.UID, s.Data["p"], s.UID)
				})
				return uids
			}
			uids := expectCopies("the changes in the copies", "2", "v2", nil)

			// Copies someone deletes are made anew (their informer of the namespace saw them go).
			if err := cms.Delete(fx.ctx, "app", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := secrets.Delete(fx.ctx, "creds", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			expectCopies("the deleted copies made anew", "2", "v2", uids)
		})
	}
}
