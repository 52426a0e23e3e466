package node

import (
	"cmp"
	"testing"
	"time"

	"github.com/flotilla-io/flotilla/internal/reachability"
)

func TestAllowedSilence(t *testing.T) {
	now := time.Now()
	const interval, timeout, most = time.Second, 2 * time.Second, 6 * time.Second
	silence := func(length, ago time.Duration) reachability.Silence {
		return reachability.Silence{Length: length, Ended: now.Add(-ago)}
	}
	for _, tc := range []struct {
		name     string
		recent   []reachability.Silence
		interval time.Duration // zero: interval
		want     time.Duration
	}{
		{name: "never silent", want: timeout},
		{name: "only the rhythm of the probes", recent: []reachability.Silence{silence(time.Second, time.Second), silence(1100*time.Millisecond, 0)}, want: timeout},
		{name: "silent no longer than the probe timeout", recent: []reachability.Silence{silence(timeout, time.Minute)}, want: timeout},
		{name: "came back from a silence of 2.5s", recent: []reachability.Silence{silence(2500*time.Millisecond, time.Minute)}, want: 5 * time.Second},
		{name: "the longest recent silence counts", recent: []reachability.Silence{silence(2500*time.Millisecond, 2*time.Minute), silence(2200*time.Millisecond, time.Minute)}, want: 5 * time.Second},
		{name: "at most probeTimeoutMax", recent: []reachability.Silence{silence(4*time.Second, time.Minute)}, want: most},
		{name: "an outage teaches nothing", recent: []reachability.Silence{silence(30*time.Second, time.Minute)}, want: timeout},
		{name: "an outage beside a stutter", recent: []reachability.Silence{silence(30*time.Second, 2*time.Minute), silence(2500*time.Millisecond, time.Minute)}, want: 5 * time.Second},
		{name: "probes further apart than the timeout: quiet between them", recent: []reachability.Silence{silence(3*time.Second+100*time.Millisecond, 0)}, interval: 3 * time.Second, want: timeout},
		{name: "probes further apart than the timeout: a probe waited", recent: []reachability.Silence{silence(4*time.Second+100*time.Millisecond, 0)}, interval: 3 * time.Second, want: most},
		{name: "forgotten after silenceMemory", recent: []reachability.Silence{silence(2500*time.Millisecond, silenceMemory+time.Second)}, want: timeout},
		{name: "remembered until then", recent: []reachability.Silence{silence(2500*time.Millisecond, silenceMemory-time.Second)}, want: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			interval := cmp.Or(tc.interval, interval)
			if got := allowedSilence(interval, timeout, most, tc.recent, now); got != tc.want {
				t.Errorf("allowedSilence = %s, want %s", got, tc.want)
			}
		})
	}
	if got := allowedSilence(interval, timeout, timeout, []reachability.Silence{silence(3*time.Second, 0)}, now); got != timeout {
		t.Errorf("allowedSilence with probeTimeoutMax = probeTimeout is %s, want %s: learning off", got, timeout)
	}
}
