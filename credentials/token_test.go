package credentials

import (
	"testing"

	"k8s.io/client-go/rest"
)

func TestRenewingTokenConfigLeavesOtherCredentials(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *rest.Config
	}{
		{name: "no token", cfg: &rest.Config{Host: "https://a"}},
		{name: "a static token", cfg: &rest.Config{Host: "https://a", BearerToken: "31ada4fd-adec-460c-809a-9e56ceb75269"}},
		{name: "an OIDC token", cfg: &rest.Config{Host: "https://a", BearerToken: jwt(`{"iss":"https://accounts.example","sub":"alice","exp":1700000600}`)}},
		{name: "a legacy token never expires", cfg: &rest.Config{Host: "https://a", BearerToken: jwt(`{"kubernetes.io/serviceaccount/namespace":"ns","kubernetes.io/serviceaccount/service-account.name":"sa"}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, tok, err := RenewingTokenConfig(tc.cfg, TokenOptions{})
			if err != nil || tok != nil || got != tc.cfg {
				t.Errorf("RenewingTokenConfig = %p, %v, %v; want the config unchanged, nil, nil", got, tok, err)
			}
		})
	}
}
