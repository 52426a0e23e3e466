package lab

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// ForTest starts a lab for one test and stops it when the test ends, whether it passes, fails or panics.
// Its processes die with the test binary even if the binary itself is killed.
func ForTest(t testing.TB, opts Options) *Lab {
	t.Helper()
	dir, err := os.MkdirTemp("", "flotilla-lab-")
	if err != nil {
		t.Fatal(err)
	}
	opts.Dir, opts.Attached = dir, true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := Start(ctx, opts)
	t.Cleanup(func() {
		if l != nil {
			if err := l.Stop(); err != nil {
				t.Errorf("stopping the lab: %v", err)
			}
		}
		keepOrRemove(dir, t.Failed())
	})
	if err != nil {
		t.Fatalf("starting the lab: %v", err)
	}
	return l
}

// RunWithLab starts one lab for a whole test binary (from TestMain), hands it to use, runs the tests and
// stops the lab. It returns the exit code for os.Exit.
func RunWithLab(m *testing.M, opts Options, use func(*Lab)) int {
	dir, err := os.MkdirTemp("", "flotilla-lab-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts.Dir, opts.Attached = dir, true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	started := time.Now()
	l, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the lab: %v\n", err)
		keepOrRemove(dir, true)
		return 1
	}
	fmt.Fprintf(os.Stderr, "lab up in %s (%d workload clusters) at %s\n", time.Since(started).Round(time.Millisecond), len(l.Workloads), dir)
	use(l)
	code := m.Run()
	if err := l.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the lab: %v\n", err)
		code = 1
	}
	keepOrRemove(dir, code != 0)
	return code
}

// keepOrRemove keeps a failed lab's folder (logs, kubeconfigs) for a post-mortem and removes a passing one.
func keepOrRemove(dir string, failed bool) {
	if failed {
		fmt.Fprintf(os.Stderr, "lab files kept for inspection: %s (logs under %s/logs)\n", dir, dir)
		return
	}
	_ = os.RemoveAll(dir)
}

// Eventually polls cond every 100 ms until it holds or limit passes, then fails the test with the last
// reason cond gave. It returns how long cond took to hold.
func Eventually(t testing.TB, limit time.Duration, what string, cond func(ctx context.Context) (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var reason string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, limit, true, func(ctx context.Context) (bool, error) {
		var ok bool
		ok, reason = cond(ctx)
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s (last: %s)", what, limit, reason)
	}
	return time.Since(start)
}
