package tracing

import (
	"net/http/httptest"
	"testing"
)

func TestAPISpanName(t *testing.T) {
	for _, tc := range []struct {
		method, path, want string
	}{
		{"POST", "/api/v1/namespaces/shop/pods", "workload create pods"},
		{"GET", "/api/v1/namespaces/shop/pods/web-0", "workload get pods"},
		{"GET", "/api/v1/pods?labelSelector=a%3Db", "workload list pods"},
		{"GET", "/api/v1/namespaces/shop/pods?watch=true", "workload watch pods"},
		{"PUT", "/api/v1/namespaces/shop/pods/web-0/status", "workload update pods/status"},
		{"PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", "workload patch deployments"},
		{"DELETE", "/api/v1/namespaces/shop/pods/web-0", "workload delete pods"},
		{"POST", "/api/v1/namespaces", "workload create namespaces"},
		{"POST", "/api/v1/namespaces/shop/pods/web-0/eviction", "workload create pods/eviction"},
		{"GET", "/version", "workload GET /version"},
		{"GET", "/healthz", "workload GET /healthz"},
	} {
		r := httptest.NewRequest(tc.method, "https://apiserver:6443"+tc.path, nil)
		if got := APISpanName("workload", r); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}
