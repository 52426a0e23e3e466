// Package kubeletauth decides who may call flotilla's kubelet API, as a kubelet does with webhook
// authentication and authorization: the management apiserver vouches for callers (its own client certificate,
// TokenReviews of bearer tokens) and says what each may do (SubjectAccessReviews of the node's subresources).
package kubeletauth

import (
	"fmt"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/request/websocket"
	"k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authentication/token/cache"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes"
)

// How long the kubelet API trusts the management apiserver's answers: a kubelet's defaults
// (KubeletConfiguration authentication.webhook.cacheTTL, authorization.webhook.cacheAuthorizedTTL and
// cacheUnauthorizedTTL). A token's TokenReview, accepted or rejected, is asked again after TokenReviewTTL (a
// review the apiserver did not answer is not kept); a caller's SubjectAccessReview after AccessAllowedTTL
// when allowed, AccessDeniedTTL when denied, so a right granted reaches the node within 30 s and one
// withdrawn within 5 minutes.
const (
	TokenReviewTTL   = 2 * time.Minute
	AccessAllowedTTL = 5 * time.Minute
	AccessDeniedTTL  = 30 * time.Second
)

// New is the kubelet API's authentication and authorization for node: a client certificate signed by the CA
// in clientCAFile (the management apiserver's kubelet client certificate), or a bearer token the apiserver
// accepts; then the node subresource the path maps to (virtual-kubelet's copy of the kubelet's mapping). The
// reviews go through the client reviews, which should be one of their own: their number is the callers' to
// choose.
func New(reviews kubernetes.Interface, node, clientCAFile string) (nodeutil.Auth, error) {
	ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	// virtual-kubelet's WebhookAuth builds the same chain with k8s.io/apiserver's delegating authenticator,
	// which caches no rejection in practice: the apiserver answers every token it does not know with an error
	// ("invalid bearer token"), and errors are not kept. tokenReviewer makes a rejection an answer.
	tokens := cache.New(tokenReviewer{reviews.AuthenticationV1().TokenReviews()}, false, TokenReviewTTL, TokenReviewTTL)
	authn := group.NewAuthenticatedGroupAdder(union.New(
		x509.NewDynamic(ca.VerifyOptions, x509.CommonNameUserConversion),
		bearertoken.New(tokens),
		websocket.NewProtocolAuthenticator(tokens),
	))
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: reviews.AuthorizationV1(),
		AllowCacheTTL:             AccessAllowedTTL,
		DenyCacheTTL:              AccessDeniedTTL,
		WebhookRetryBackoff:       options.DefaultAuthWebhookRetryBackoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("kubelet API authorization: %w", err)
	}
	return nodeutil.InstrumentAuth(auth{authn, nodeutil.NodeRequestAttr{NodeName: node}, authz}), nil
}

// auth puts the three parts of a nodeutil.Auth together.
type auth struct {
	authenticator.Request
	nodeutil.NodeRequestAttr
	authorizer.Authorizer
}
