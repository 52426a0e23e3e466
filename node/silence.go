package node

import (
	"time"

	"github.com/flotilla-io/flotilla/internal/reachability"
)

// silenceMemory is how long a silence the workload apiserver came back from lengthens the silence its
// cluster is allowed (allowedSilence): about the length of a large rollout, whose bursts are what starve
// an apiserver of CPU.
const silenceMemory = 10 * time.Minute

// SilenceWorthLearning is the shortest silence of the workload apiserver that allowedSilence learns from:
// longer than a probe interval and half a probe timeout. A probe is sent within a probe interval of any
// moment, so in such a silence a probe waited more than half its timeout: the apiserver was slow or silent,
// not merely quiet between probes. Use it as reachability.Heard's RememberFrom.
func SilenceWorthLearning(probeInterval, probeTimeout time.Duration) time.Duration {
	return probeInterval + probeTimeout/2
}

// allowedSilence is how long the workload apiserver may send nothing at all before its cluster counts as
// unreachable (see Controller.probe). It is probeTimeout, unless within silenceMemory the apiserver fell
// silent for longer than that (and than SilenceWorthLearning) and came back: then twice the longest such
// silence, up to probeTimeoutMax.
//
// An apiserver that came back from a silence was likely starved of CPU by a burst of work, and is likely to
// be again before the burst ends; each time it is taken for unreachable, its node goes NotReady and the
// management cluster marks every pod on it not ready, out of its Services' endpoints. Learning from silences
// it came back from tells such a cluster apart from one that has been answering in time, which keeps the
// short probeTimeout and so the fast failover. The price is a slower failover for a cluster that did come
// back, from a short partition or restart as well. A silence longer than probeTimeoutMax is an outage, not a
// stutter, and teaches nothing.
func allowedSilence(probeInterval, probeTimeout, probeTimeoutMax time.Duration, recent []reachability.Silence, now time.Time) time.Duration {
	allowed := probeTimeout
	shortest := max(probeTimeout, SilenceWorthLearning(probeInterval, probeTimeout))
	for _, s := range recent {
		if s.Length <= shortest || s.Length > probeTimeoutMax || now.Sub(s.Ended) > silenceMemory {
			continue
		}
		allowed = max(allowed, min(2*s.Length, probeTimeoutMax))
	}
	return allowed
}
