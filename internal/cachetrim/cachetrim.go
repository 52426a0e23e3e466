// Package cachetrim holds informer transforms that keep cached objects small.
package cachetrim

import "k8s.io/apimachinery/pkg/api/meta"

// ManagedFields drops an object's field-ownership records, often the larger part of it, before an informer
// caches it; flotilla never reads them. Updating an object read from such a cache is safe: the apiserver
// keeps the stored records when a request leaves managedFields out.
func ManagedFields(obj any) (any, error) {
	if o, err := meta.Accessor(obj); err == nil {
		o.SetManagedFields(nil)
	}
	return obj, nil
}
