package follow

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-io/flotilla/test/lab"
)

// staleUID is the uid of a copy that is no longer there.
const staleUID = types.UID("00000000-0000-0000-0000-00000000dead")

// TestUIDPrecondition: what the apiservers answer to a server-side apply whose uid is not the stored
// object's (Invalid) or names an object that is not there (Conflict), and that a copy cached by this node
// whose name a foreign object took since is reported as a NameConflict and left alone, for every kind,
// while a copy of this node that replaced it is kept current.
func TestUIDPrecondition(t *testing.T) {
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	fx := newFixtureWith(t, fixtureOptions{
		management: []runtime.Object{configMap("app", map[string]string{"a": "1"}), web},
		workload:   []runtime.Object{configMap("app", map[string]string{"theirs": "x"}), web},
	})
	cms, svcs := fx.workload.CoreV1().ConfigMaps(fx.ns), fx.workload.CoreV1().Services(fx.ns)

	// The apiservers' answers, on which the followers rely.
	apply := func(name string) error {
		body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"uid":%q},"data":{"a":"1"}}`, name, staleUID)
		_, err := cms.Patch(fx.ctx, name, types.ApplyPatchType, []byte(body), metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)})
		return err
	}
	if err := apply("app"); !apierrors.IsInvalid(err) || !uidMismatch(err) {
		t.Errorf("apply with the uid of another object: %v, want Invalid on metadata.uid", err)
	}
	if err := apply("nothing-here"); !apierrors.IsConflict(err) {
		t.Errorf("apply with a uid where no object is: %v, want Conflict", err)
	}
	status := fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":%q,"uid":%q},"status":{"loadBalancer":{"ingress":[]}}}`, fx.ns, staleUID)
	if _, err := fx.management.CoreV1().Services(fx.ns).Patch(fx.ctx, "web", types.ApplyPatchType, []byte(status),
		metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)}, "status"); !uidMismatch(err) {
		t.Errorf("status apply with the uid of another object: %v, want Invalid on metadata.uid", err)
	}

	// This node's cache still holds copies whose names foreign objects took since.
	foreignCM, err := cms.Get(fx.ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	foreignSvc, err := svcs.Get(fx.ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	staleMeta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: fx.ns, Name: name, UID: staleUID, Labels: fx.owner,
			Annotations: map[string]string{AnnotationSourceHash: "stale"}}
	}
	var srcCM *corev1.ConfigMap
	var srcSvc *corev1.Service
	// No proxy references the ConfigMap: the test holds it, so that it has a watch (objectWatches).
	fx.f.cmWatches.set("test", []string{fx.ns + "/app"})
	lab.Poll(t, limit, "the management objects in the cache", func() (bool, error) {
		srcCM, _ = fx.f.configMaps.source(fx.ns, "app")
		srcSvc, _ = fx.f.serviceK.source(fx.ns, "web")
		return srcCM != nil && srcSvc != nil, nil
	})
	before := fx.writes.Load()
	_, have, err := fx.f.configMaps.ensure(fx.ctx, srcCM, &corev1.ConfigMap{ObjectMeta: staleMeta("app")}, true)
	expectConflict(t, "ConfigMap", have, err)
	_, have, err = fx.f.serviceK.ensure(fx.ctx, srcSvc, &corev1.Service{ObjectMeta: staleMeta("web")}, true)
	expectConflict(t, "Service", have, err)
	if n := fx.writes.Load() - before; n != 2 {
		t.Errorf("%d writes, want the two failed applies (no delete)", n)
	}
	if now, err := cms.Get(fx.ctx, "app", metav1.GetOptions{}); err != nil || now.ResourceVersion != foreignCM.ResourceVersion {
		t.Errorf("the foreign ConfigMap: %v, %v", now, err)
	}
	if now, err := svcs.Get(fx.ctx, "web", metav1.GetOptions{}); err != nil || now.ResourceVersion != foreignSvc.ResourceVersion {
		t.Errorf("the foreign Service: %v, %v", now, err)
	}
	fx.expectEvent("app", ReasonNameConflict, fx.ns+"/app")
	fx.expectEvent("web", ReasonNameConflict, fx.ns+"/web")

	// The foreign ConfigMap goes and this node copies anew; a sync that still holds the stale copy keeps the
	// new one current.
	if err := cms.Delete(fx.ctx, "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh, have, err := fx.f.configMaps.ensure(fx.ctx, srcCM, nil, false)
	if err != nil || !have {
		t.Fatalf("copying anew: %v", err)
	}
	changed := srcCM.DeepCopy()
	changed.Data["a"] = "2"
	out, have, err := fx.f.configMaps.ensure(fx.ctx, changed, &corev1.ConfigMap{ObjectMeta: staleMeta("app")}, true)
	if err != nil || !have || out.UID != fresh.UID || out.Data["a"] != "2" {
		t.Errorf("ensure over a stale copy of this node's = %+v, %v, %v; want the live copy %s updated", out, have, err, fresh.UID)
	}
}

func expectConflict(t *testing.T, kind string, have bool, err error) {
	t.Helper()
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.Kind != kind || have || !decision(err) {
		t.Errorf("%s: ensure over a stale copy = %v (have %v), want a NameConflict", kind, err, have)
	}
	if strings.Contains(fmt.Sprint(err), "anew") {
		t.Errorf("%s: %v", kind, err)
	}
}
