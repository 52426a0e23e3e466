package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// testContext is a context that ends with the test, or after limit.
func testContext(t *testing.T, limit time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace named after the test in the given clusters and deletes it afterwards.
// Under the tenancy contract, the management cluster's is enabled for delegation (tenancy.LabelEnabled)
// and a workload cluster's is opened to flotilla (tenancy.LabelOpen), as its admin creating it means to.
func namespace(t *testing.T, clients ...kubernetes.Interface) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + fmt.Sprintf("-%d", time.Now().UnixNano()%100000)
	for _, c := range clients {
		labels := map[string]string{tenancy.LabelOpen: "true"}
		if c == shared.Management.Client {
			labels = map[string]string{tenancy.LabelEnabled: "true"}
		}
		_, err := c.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating namespace %s: %v", name, err)
		}
		t.Cleanup(func() {
			_ = c.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	return name
}

// eventually polls cond every 100 ms until it holds or limit passes, then fails the test with the last
// reason cond gave.
func eventually(t *testing.T, limit time.Duration, what string, cond func(ctx context.Context) (bool, string)) time.Duration {
	t.Helper()
	return lab.Eventually(t, limit, what, cond)
}

// freeze stops a workload cluster's apiserver (SIGSTOP) and returns what resumes it; resuming twice is
// resuming once, and the test's end resumes it in any case.
func freeze(t *testing.T, c *lab.Cluster) (resume func()) {
	t.Helper()
	if err := c.FreezeAPIServer(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if err := c.ResumeAPIServer(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(resume)
	return resume
}
