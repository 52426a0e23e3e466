package cachetrim

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestManagedFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  any
	}{
		{"pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}},
		{"config map", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "flotilla"}}}}},
		{"nothing to drop", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ManagedFields(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			o := out.(metav1.Object)
			if o.GetManagedFields() != nil || o.GetName() != "a" {
				t.Errorf("got %+v", o)
			}
		})
	}
	// A deletion tombstone is not an object: it passes through unchanged.
	tombstone := cache.DeletedFinalStateUnknown{Key: "ns/a"}
	if out, err := ManagedFields(tombstone); err != nil || out != tombstone {
		t.Errorf("tombstone: %v, %v", out, err)
	}
}
