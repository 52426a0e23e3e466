package node

import (
	"time"

	"github.com/flotilla-io/flotilla/internal/reachability"
)

// silenceMemory is how long a silence the workload apiserver came back from lengthens the silence its
// cluster is allowed (allowedSilence): about the length of a large rollout, whose bursts are what starve
// an apiserver of CPU.
const silenceMemory = 10 * time.Minute

// allowedSilence is how long the workload apiserver may send nothing at all before its cluster counts as
// unreachable (see Controller.probe). It is probeTimeout, unless within silenceMemory the apiserver fell
// silent for longer than that and came back: then twice the longest such silence, up to probeTimeoutMax.
//
// An apiserver that came back from a silence was starved, not lost, and one starved once in a burst of work
// is likely to be again before the burst ends; each time it is taken for unreachable, its node goes NotReady
// and the management cluster marks every pod on it not ready, out of its Services' endpoints. Learning from
// silences it came back from tells such a cluster apart from one that has been quiet and answering in time,
// which keeps the short probeTimeout and so the fast failover. A silence longer than probeTimeoutMax is an
// outage, not a stutter, and teaches nothing.
func allowedSilence(probeTimeout, probeTimeoutMax time.Duration, recent []reachability.Silence, now time.Time) time.Duration {
	allowed := probeTimeout
	for _, s := range recent {
		if s.Length <= probeTimeout || s.Length > probeTimeoutMax || now.Sub(s.Ended) > silenceMemory {
			continue
		}
		allowed = max(allowed, min(2*s.Length, probeTimeoutMax))
	}
	return allowed
}
