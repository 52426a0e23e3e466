package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"reflect"
	"testing"

	"k8s.io/apiserver/pkg/server/healthz"
)

// syncs is an informer factory's answer, as WaitForCacheSync gives it.
type syncs map[reflect.Type]bool

func (s syncs) WaitForCacheSync(<-chan struct{}) map[reflect.Type]bool { return s }

var (
	podType  = reflect.TypeOf(struct{ pod int }{})
	nodeType = reflect.TypeOf(struct{ node int }{})
)

func TestInformers(t *testing.T) {
	for _, c := range []struct {
		name      string
		factories []cacheSyncWaiter
		ready     bool
	}{
		{name: "none yet (a standby)", ready: true},
		{name: "all synced", factories: []cacheSyncWaiter{syncs{podType: true}, syncs{nodeType: true}}, ready: true},
		{name: "one not synced", factories: []cacheSyncWaiter{syncs{podType: true}, syncs{nodeType: false}}},
		{name: "a type synced in one factory only", factories: []cacheSyncWaiter{syncs{podType: false}, syncs{podType: true}}},
		{name: "a type synced in one factory only, other order", factories: []cacheSyncWaiter{syncs{podType: true}, syncs{podType: false}}},
	} {
		i := &Informers{}
		i.Add(c.factories...)
		err := i.Check(nil)
		if (err == nil) != c.ready {
			t.Errorf("%s: Check() = %v, want ready %v", c.name, err, c.ready)
		}
	}
}

// TestServe: /healthz answers ok whatever the readiness checks say; /readyz only while they all pass.
func TestServe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var failing error = errors.New("the management apiserver does not answer")
	check := healthz.NamedCheck("management-apiserver", func(*http.Request) error { return failing })
	if err := Serve(ctx, addr, check); err != nil {
		t.Fatal(err)
	}
	status := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz: %d", got)
	}
	if got := status("/readyz"); got == http.StatusOK {
		t.Errorf("/readyz answered ok while a check fails")
	}
	failing = nil
	if got := status("/readyz"); got != http.StatusOK {
		t.Errorf("/readyz: %d once every check passes", got)
	}
}
