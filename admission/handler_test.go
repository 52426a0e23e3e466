package admission

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/flotilla-io/flotilla/node"
)

// podJSON is a pod as the apiserver hands it to a webhook on CREATE: defaulted, no name yet (generateName).
const podJSON = `{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"web-7d4b9c-","namespace":"shop",
"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx","resources":{},
"terminationMessagePath":"/dev/termination-log","imagePullPolicy":"Always"}],"restartPolicy":"Always",
"dnsPolicy":"ClusterFirst","serviceAccountName":"default","schedulerName":"default-scheduler",
"tolerations":TOLERATIONS,"priority":0},"status":{}}`

// review is an admission.k8s.io/v1 AdmissionReview as the apiserver sends it.
func review(operation, resource, subResource, object string) string {
	return `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{
"uid":"705ab4f5-6393-11e8-b7cc-42010a800002",
"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"` + resource + `"},
"subResource":"` + subResource + `","requestKind":{"group":"","version":"v1","kind":"Pod"},
"requestResource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"` + operation + `",
"userInfo":{"username":"alice","groups":["system:authenticated"]},"object":` + object + `,"oldObject":null,
"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}`
}

func pod(tolerations string) string { return strings.Replace(podJSON, "TOLERATIONS", tolerations, 1) }

func post(t *testing.T, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	Handler(node.Taint()).ServeHTTP(w, httptest.NewRequest(http.MethodPost, MutatePath, strings.NewReader(body)))
	return w
}

// answer reads the webhook's answer to a review it accepted.
func answer(t *testing.T, w *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	got := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(w.Body.Bytes(), got); err != nil {
		t.Fatalf("answer %s: %v", w.Body, err)
	}
	if got.APIVersion != "admission.k8s.io/v1" || got.Kind != "AdmissionReview" || got.Response == nil ||
		got.Response.UID != "705ab4f5-6393-11e8-b7cc-42010a800002" {
		t.Fatalf("answer is not a v1 AdmissionReview with the request's UID: %s", w.Body)
	}
	return got.Response
}

func TestHandlerAddsToleration(t *testing.T) {
	object := pod(`[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}]`)
	resp := answer(t, post(t, review("CREATE", "pods", "", object)))
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response %+v: want allowed with a JSONPatch", resp)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply([]byte(object))
	if err != nil {
		t.Fatalf("applying %s: %v", resp.Patch, err)
	}
	got := &corev1.Pod{}
	if err := json.Unmarshal(patched, got); err != nil {
		t.Fatal(err)
	}
	seconds := int64(300)
	wantTolerations := []corev1.Toleration{
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds},
		{Key: node.TaintKey, Operator: corev1.TolerationOpEqual, Value: node.TaintValue, Effect: corev1.TaintEffectNoSchedule},
	}
	if diff := cmp.Diff(wantTolerations, got.Spec.Tolerations); diff != "" {
		t.Errorf("tolerations (-want +got):\n%s", diff)
	}
}

func TestHandlerAdmitsAsIs(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"a pod that tolerates everything", review("CREATE", "pods", "", pod(`[{"operator":"Exists"}]`))},
		{"an update", review("UPDATE", "pods", "", pod(`[]`))},
		{"a subresource", review("CREATE", "pods", "binding", `{"kind":"Binding","apiVersion":"v1","metadata":{"name":"web"},"target":{"name":"n"}}`)},
		{"another resource", review("CREATE", "services", "", `{"kind":"Service","apiVersion":"v1","metadata":{"name":"web"}}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := answer(t, post(t, tc.body))
			if !resp.Allowed || resp.Patch != nil || resp.PatchType != nil || resp.Result != nil {
				t.Errorf("response %+v: want allowed as is", resp)
			}
		})
	}
}

// TestHandlerRefusesUnreadablePod: a review whose object is not a pod is answered (not an HTTP error),
// refused with the reason, rather than admitted without the toleration.
func TestHandlerRefusesUnreadablePod(t *testing.T) {
	resp := answer(t, post(t, review("CREATE", "pods", "", `{"kind":"Pod","apiVersion":"v1","spec":{"containers":"web"}}`)))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, "not a pod") {
		t.Errorf("response %+v, result %+v: want refused with code 400", resp, resp.Result)
	}
}

func TestHandlerBadRequests(t *testing.T) {
	for _, tc := range []struct{ name, body, message string }{
		{"not JSON", "<html>", "not an AdmissionReview"},
		{"empty", "", "not an AdmissionReview"},
		{"v1beta1", strings.Replace(review("CREATE", "pods", "", pod("[]")), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), "want an AdmissionReview of admission.k8s.io/v1"},
		{"another kind", `{"kind":"Pod","apiVersion":"v1"}`, "want an AdmissionReview"},
		{"no request", `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}`, "carries no request"},
		{"too large", `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"` + strings.Repeat("x", maxReviewBytes) + `"}}`, "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := post(t, tc.body)
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), tc.message) {
				t.Errorf("HTTP %d %q, want 400 saying %q", w.Code, w.Body, tc.message)
			}
		})
	}
	w := httptest.NewRecorder()
	Handler(node.Taint()).ServeHTTP(w, httptest.NewRequest(http.MethodGet, MutatePath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: HTTP %d, want 405", MutatePath, w.Code)
	}
}

func TestHandlerProbes(t *testing.T) {
	for _, path := range []string{"/healthz", "/readyz"} {
		w := httptest.NewRecorder()
		Handler(node.Taint()).ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if body, _ := io.ReadAll(w.Body); w.Code != http.StatusOK || string(body) != "ok" {
			t.Errorf("GET %s: HTTP %d %q", path, w.Code, body)
		}
	}
}
