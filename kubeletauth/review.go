package kubeletauth

import (
	"context"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// ReviewTimeout bounds a TokenReview, its wait for the reviews client's rate limit included: k8s.io/apiserver's
// default for delegated authentication (TokenRequestTimeout). Under a flood of bogus tokens, a request whose
// review could not start within it is refused at once (401) rather than held, so a flood holds at most the
// reviews of this many seconds of the client's rate (a few hundred connections), not all its connections.
const ReviewTimeout = 10 * time.Second

// tokenReviewer asks the management apiserver who a bearer token belongs to (TokenReview).
type tokenReviewer struct {
	reviews authenticationv1client.TokenReviewInterface
}

func (r tokenReviewer) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, ReviewTimeout)
	defer cancel()
	review, err := r.reviews.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	return answer(review, err)
}

// answer reads a TokenReview: the user it names; a rejection, the apiserver's answer even when it gives a
// reason (Status.Error), so it is kept like an acceptance; or, when the apiserver did not answer, an error,
// which is not kept.
func answer(review *authenticationv1.TokenReview, err error) (*authenticator.Response, bool, error) {
	if err != nil {
		return nil, false, err
	}
	if !review.Status.Authenticated {
		return nil, false, nil
	}
	u := review.Status.User
	var extra map[string][]string
	if len(u.Extra) > 0 {
		extra = map[string][]string{}
		for k, v := range u.Extra {
			extra[k] = v
		}
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra}}, true, nil
}
