package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

const (
	unrelatedSecrets    = 1000
	unrelatedSecretSize = 100 << 10
	// settle is how long flotilla gets to take in (or not) the new Secrets before it is measured again.
	settle = 30 * time.Second
)

// BenchmarkUnrelatedSecretsMemory measures what 1,000 Secrets of 100 KiB that no pod references cost one
// flotilla in resident memory: they sit in a management namespace enabled for delegation, so only how
// flotilla reads Secrets decides whether it holds them (a cluster-wide informer caches every one; watches per
// referenced object hold none). It reports the RSS before, after and the difference, in MB.
func BenchmarkUnrelatedSecretsMemory(b *testing.B) {
	rec := record(b)
	const workload = "eu-west-3-1"
	l := lab.ForTest(b, lab.Options{Workloads: []lab.WorkloadSpec{lab.Workload(workload, "eu-west-3")}, Flotilla: true})
	mc := l.Management.Client
	ctx := context.Background()
	pid := l.Flotillas[workload].PID
	b.StopTimer() // only the creation of the Secrets is timed

	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("unrelated-%d", i)
		enabled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{tenancy.LabelEnabled: "true"}}}
		if _, err := mc.CoreV1().Namespaces().Create(ctx, enabled, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = mc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })

		time.Sleep(settle) // the lab has just started: let flotilla's caches and heap settle first
		before := rss(b, pid)
		b.StartTimer()
		data := bytes.Repeat([]byte{'x'}, unrelatedSecretSize)
		for s := range unrelatedSecrets {
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%04d", s)}, Data: map[string][]byte{"blob": data}}
			if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				_, err := mc.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{})
				return err == nil, nil // a busy apiserver may time out; try again
			}); err != nil {
				b.Fatalf("creating secret %d: %v", s, err)
			}
		}
		b.StopTimer()
		time.Sleep(settle)
		after := rss(b, pid)
		rec.metric(before, "MB-rss-before", "one flotilla's resident memory before the Secrets, MB")
		rec.metric(after, "MB-rss-after", fmt.Sprintf("its resident memory after %d unrelated Secrets of %d KiB, MB", unrelatedSecrets, unrelatedSecretSize>>10))
		rec.metric(after-before, "MB-rss-growth", "the growth, MB (near 0: flotilla does not cache Secrets no pod references)")
		b.Logf("flotilla %s resident memory: %.1f MB before, %.1f MB after %d unrelated Secrets of %d KiB (%+.1f MB)",
			workload, before, after, unrelatedSecrets, unrelatedSecretSize>>10, after-before)
		fmt.Printf("rss before %.1f MB, after %.1f MB, growth %+.1f MB\n", before, after, after-before)
	}
}

// rss is a process's resident memory in MB, from /proc/<pid>/status.
func rss(b *testing.B, pid int) float64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("VmRSS of pid %d: %q", pid, line)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
