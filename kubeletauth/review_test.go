package kubeletauth

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

func TestAnswer(t *testing.T) {
	unreachable := errors.New("connection refused")
	for _, tc := range []struct {
		name    string
		review  *authenticationv1.TokenReview
		err     error
		want    *authenticator.Response
		wantOK  bool
		wantErr error
	}{
		{name: "accepted", review: &authenticationv1.TokenReview{Status: authenticationv1.TokenReviewStatus{
			Authenticated: true, User: authenticationv1.UserInfo{Username: "system:serviceaccount:ns:sa", UID: "u-1",
				Groups: []string{"system:serviceaccounts"}, Extra: map[string]authenticationv1.ExtraValue{"pod": {"p"}}}}},
			want: &authenticator.Response{User: &user.DefaultInfo{Name: "system:serviceaccount:ns:sa", UID: "u-1",
				Groups: []string{"system:serviceaccounts"}, Extra: map[string][]string{"pod": {"p"}}}}, wantOK: true},
		// The apiserver gives every unknown token this reason; it is still its answer, and kept.
		{name: "rejected with a reason", review: &authenticationv1.TokenReview{Status: authenticationv1.TokenReviewStatus{
			Error: "invalid bearer token"}}},
		{name: "rejected", review: &authenticationv1.TokenReview{}},
		// No answer: an error, which the cache does not keep, so the next request asks again.
		{name: "unanswered", err: unreachable, wantErr: unreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := answer(tc.review, tc.err)
			if ok != tc.wantOK || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("ok %v, error %v; want %v, %v", ok, err, tc.wantOK, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}
