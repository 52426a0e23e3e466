package provider

import (
	"testing"

	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/tenancy"
)

// TestNameConflictIsOneReason: tenancy defines NameConflict (provider aliases it); follow, which gives it for
// copies, must give the same string, so alerts and runbooks match whichever package reported it.
func TestNameConflictIsOneReason(t *testing.T) {
	if follow.ReasonNameConflict != tenancy.ReasonNameConflict {
		t.Errorf("follow.ReasonNameConflict %q, tenancy.ReasonNameConflict %q", follow.ReasonNameConflict, tenancy.ReasonNameConflict)
	}
}

// TestCollectionGrace: what a sync has just created survives at least two rounds of clean-up.
func TestCollectionGrace(t *testing.T) {
	if tenancy.CollectionGrace < 2*orphanInterval {
		t.Errorf("tenancy.CollectionGrace %v is shorter than two collection rounds (%v)", tenancy.CollectionGrace, 2*orphanInterval)
	}
}
