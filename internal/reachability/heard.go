package reachability

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Heard records when a cluster's apiserver last sent anything to any of the clients it wraps: a response, or
// a byte of a response body such as a watch stream's next event.
//
// It tells an overloaded apiserver from a silent one. One that answers its health probe late is usually
// still streaming watch events to the same client a moment before; one that is frozen, or cut off by a
// partition, sends nothing at all.
//
// It stamps the time flotilla reads what came, not when it arrived: what the apiserver sent just before it
// froze, and the network still holds, counts as heard once read, which a client draining its watch streams
// does within moments.
type Heard struct {
	// last is when something was last heard, as nanoseconds since epoch plus one; zero before anything was.
	// Kept on the monotonic clock, so a step of the wall clock neither excuses a silent apiserver nor
	// condemns a live one.
	last atomic.Int64

	// RememberFrom is the shortest silence Silences returns; zero returns none. Shorter gaps are the rhythm
	// of the requests flotilla makes (a health probe a second), not an apiserver falling silent, and would
	// push the silences that matter out of the few remembered.
	RememberFrom time.Duration

	mu sync.Mutex
	// silences are the latest silences of RememberFrom or longer, oldest first.
	silences []Silence
}

// Silence is a stretch of time in which the apiserver sent nothing: how long it lasted, and when it ended.
type Silence struct {
	Length time.Duration
	Ended  time.Time
}

// silencesRemembered bounds the memory; the users of Silences look minutes back, at the longest few.
const silencesRemembered = 16

// epoch is the start of Heard's monotonic time line.
var epoch = time.Now()

// Last is when the apiserver last sent anything; zero before it ever did. It carries a monotonic clock
// reading, so time.Since of it is immune to steps of the wall clock.
func (h *Heard) Last() time.Time {
	if n := h.last.Load(); n != 0 {
		return epoch.Add(time.Duration(n - 1))
	}
	return time.Time{}
}

// Silences returns the latest silences of RememberFrom or longer that ended, oldest first (at most
// silencesRemembered). A silence still going on is not among them: see Last.
func (h *Heard) Silences() []Silence {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Silence(nil), h.silences...)
}

func (h *Heard) stamp() { h.heardAt(time.Since(epoch)) }

// heardAt records that something was heard at that time on Heard's time line, and the silence it ends if
// that was long. The last time heard only moves forward: a call that read the clock before another but comes
// after it changes nothing, and so cannot make up a silence out of its own delay. Of two calls at once only
// one sees the gap.
func (h *Heard) heardAt(sinceEpoch time.Duration) {
	now := int64(sinceEpoch) + 1
	for {
		before := h.last.Load()
		if now <= before {
			return
		}
		if h.last.CompareAndSwap(before, now) {
			if gap := time.Duration(now - before); before != 0 && h.RememberFrom > 0 && gap >= h.RememberFrom {
				h.remember(Silence{Length: gap, Ended: epoch.Add(sinceEpoch)})
			}
			return
		}
	}
}

// remember adds a silence, forgetting the oldest if silencesRemembered are already kept.
func (h *Heard) remember(s Silence) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.silences) == silencesRemembered {
		h.silences = append(h.silences[:0], h.silences[1:]...)
	}
	h.silences = append(h.silences, s)
}

// Wrap returns rt with every response and every read of a response body recorded. Use it as a rest.Config's
// WrapTransport. Upgraded connections (exec, port-forward) are left alone: their bodies are not only read.
func (h *Heard) Wrap(rt http.RoundTripper) http.RoundTripper {
	return promhttp.RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if err != nil {
			return resp, err
		}
		h.stamp()
		if resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil {
			resp.Body = heardBody{ReadCloser: resp.Body, heard: h}
		}
		return resp, nil
	})
}

// heardBody stamps its Heard whenever a read returns data.
type heardBody struct {
	io.ReadCloser
	heard *Heard
}

func (b heardBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.heard.stamp()
	}
	return n, err
}
