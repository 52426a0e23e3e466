package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sirupsen/logrus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MutatePath is where the webhook answers AdmissionReviews; the chart (deploy/charts/flotilla) registers it.
const MutatePath = "/mutate-pods"

// maxReviewBytes bounds a review's body: a pod is at most what etcd stores (1.5 MiB by default), and an
// AdmissionReview of a CREATE carries it once.
const maxReviewBytes = 8 << 20

var (
	reviewGVK = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")
	podsGVR   = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// Handler serves MutatePath, plus /healthz and /readyz for the kubelet's probes. It answers an
// admission.k8s.io/v1 AdmissionReview of a pod CREATE with the pod allowed and PodPatch's patch, and
// any other review it is sent (another resource, a subresource, another operation) with the object allowed
// as it is; the webhook never refuses a pod for what it is. A body that is not such a review gets HTTP 400.
func Handler(taint corev1.Taint) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(MutatePath, &mutator{taint: taint})
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/readyz", ok)
	return mux
}

type mutator struct{ taint corev1.Taint }

func (m *mutator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "an AdmissionReview is POSTed", http.StatusMethodNotAllowed)
		return
	}
	review, err := readReview(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		logrus.WithField("remote", r.RemoteAddr).Warnf("bad admission request: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	review.Response = m.admit(review.Request)
	review.Request = nil // the answer carries the response only
	body, err := json.Marshal(review)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// readReview decodes an admission.k8s.io/v1 AdmissionReview that carries a request.
func readReview(body io.Reader) (*admissionv1.AdmissionReview, error) {
	review := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(body).Decode(review); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, fmt.Errorf("the review exceeds %d bytes", tooLarge.Limit)
		}
		return nil, fmt.Errorf("the body is not an AdmissionReview: %w", err)
	}
	if gvk := review.GroupVersionKind(); gvk != reviewGVK {
		return nil, fmt.Errorf("got %q %q, want an AdmissionReview of %s (admissionReviewVersions: [v1])",
			review.APIVersion, review.Kind, reviewGVK.GroupVersion())
	}
	if review.Request == nil {
		return nil, errors.New("the AdmissionReview carries no request")
	}
	return review, nil
}

// admit answers one request: the pod allowed, with PodPatch's patch when one is needed.
func (m *mutator) admit(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Resource != podsGVR || req.SubResource != "" || req.Operation != admissionv1.Create {
		return resp
	}
	log := logrus.WithFields(logrus.Fields{"namespace": req.Namespace, "uid": req.UID})
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		// The apiserver sends what it decoded itself, so this is not a pod it would run either. Admitting it
		// without the toleration would leave it Pending for good; refusing it says why.
		log.Warnf("refusing a pod that cannot be read: %v", err)
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonBadRequest,
			Code: http.StatusBadRequest, Message: "flotilla webhook: the request's object is not a pod: " + err.Error()}
		return resp
	}
	patch, err := PodPatch(pod, m.taint)
	if err != nil { // marshalling a toleration cannot fail; refuse rather than admit a pod that would stay Pending
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError,
			Code: http.StatusInternalServerError, Message: "flotilla webhook: " + err.Error()}
		return resp
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	if patch == nil {
		log.WithField("pod", name).Debug("pod needs no patch")
		return resp
	}
	log.WithField("pod", name).Debug("adding the virtual nodes' toleration and fit affinity")
	patchType := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &patchType
	return resp
}
