package reachability

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestInformerRequest(t *testing.T) {
	for _, tc := range []struct {
		method, url string
		want        bool
	}{
		{http.MethodGet, "/api/v1/pods?watch=true&resourceVersion=12", true},
		{http.MethodGet, "/api/v1/pods?allowWatchBookmarks=true&sendInitialEvents=true&watch=true", true},
		{http.MethodGet, "/api/v1/pods?limit=500&resourceVersion=0", true},
		{http.MethodGet, "/api/v1/namespaces/a/pods?labelSelector=x%3Dy", false}, // a plain list
		{http.MethodGet, "/api/v1/namespaces/a/pods/web", false},
		{http.MethodGet, "/readyz", false},
		{http.MethodDelete, "/api/v1/namespaces/a/pods/web?resourceVersion=3", false},
		{http.MethodPost, "/api/v1/namespaces/a/pods", false},
	} {
		r := httptest.NewRequest(tc.method, tc.url, nil)
		if got := informerRequest(r); got != tc.want {
			t.Errorf("%s %s: informer request = %v, want %v", tc.method, tc.url, got, tc.want)
		}
	}
}

func TestGate(t *testing.T) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer server.Close()
	var g Gate
	client := &http.Client{Transport: g.Wrap(http.DefaultTransport)}
	get := func(ctx context.Context, path string) <-chan error {
		done := make(chan error, 1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server.URL+path, nil)
		go func() {
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		return done
	}
	const watch = "/api/v1/pods?watch=true"
	passes := func(what string, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: still held after 5s", what)
		}
	}

	passes("a watch through the gate that starts open", get(context.Background(), watch))

	g.Set(false)
	g.Set(false) // closing twice keeps it closed
	passes("a get while closed", get(context.Background(), "/api/v1/namespaces/a/pods/web"))
	held := get(context.Background(), watch)
	select {
	case err := <-held:
		t.Fatalf("a watch went through a closed gate (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	abandoned := get(ctx, watch)
	cancel()
	select {
	case err := <-abandoned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("a held watch whose context ended: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("a held watch whose context ended is still held")
	}

	g.Set(true)
	passes("the held watch once the gate opens", held)
	passes("a watch after the gate opened", get(context.Background(), watch))
}
