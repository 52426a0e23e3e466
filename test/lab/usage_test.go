package lab

import "testing"

func TestComponentOf(t *testing.T) {
	for _, tc := range []struct{ process, want string }{
		{"management/kube-apiserver", "management kube-apiserver"},
		{"management/kube-controller-manager", "management kube-controller-manager"},
		{"us-west-2-0/kube-apiserver", "kube-apiserver"},
		{"eu-west-3-1/kwok", "kwok"},
		{"us-west-2-0/flotilla", "flotilla"},
		{"us-west-2-0/flotilla-b", "flotilla"},
		{"us-west-2-0/metrics-server", "metrics-server"},
		{"kubelet/echo-server", "echo-server"},
		{"etcd", "etcd"},
	} {
		if got := componentOf(tc.process, "management"); got != tc.want {
			t.Errorf("componentOf(%q) = %q, want %q", tc.process, got, tc.want)
		}
	}
}
