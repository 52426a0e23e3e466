package reachability

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestHeard: a response is heard when it comes, and a streamed body at each chunk, not only when it ends.
func TestHeard(t *testing.T) {
	next := make(chan string)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for chunk := range next {
			_, _ = io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
		}
	}))
	defer server.Close()
	defer close(next) // before the server closes, which waits for the handler

	var h Heard
	if !h.Last().IsZero() {
		t.Fatalf("Last = %s before anything was sent, want zero", h.Last())
	}
	client := &http.Client{Transport: h.Wrap(http.DefaultTransport)}
	before := time.Now()
	resp, err := client.Get(server.URL + "/api/v1/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	atResponse := h.Last()
	if atResponse.Before(before) {
		t.Fatalf("Last = %s after the response came, want after %s", atResponse, before)
	}

	time.Sleep(20 * time.Millisecond)
	next <- "event"
	buf := make([]byte, 16)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	if atEvent := h.Last(); !atEvent.After(atResponse.Add(10 * time.Millisecond)) {
		t.Errorf("Last = %s after an event streamed 20ms after the response (%s), want later", atEvent, atResponse)
	}
}

// TestHeardLeavesUpgradesAlone: an upgraded connection's body, which exec and port-forward also write to,
// keeps its type.
func TestHeardLeavesUpgradesAlone(t *testing.T) {
	type readWriteCloser struct {
		io.ReadCloser
		io.Writer
	}
	body := readWriteCloser{ReadCloser: io.NopCloser(nil), Writer: io.Discard}
	var h Heard
	rt := h.Wrap(roundTripper(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusSwitchingProtocols, Body: body}, nil
	}))
	resp, err := rt.RoundTrip(httptest.NewRequest(http.MethodGet, "/exec", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Body.(io.Writer); !ok {
		t.Errorf("the upgraded body is %T, no longer writable", resp.Body)
	}
	if h.Last().IsZero() {
		t.Error("the upgrade response was not heard")
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestHeardSilences: the gaps of RememberFrom or more between two things heard are remembered, the latest
// silencesRemembered of them, oldest first; shorter gaps are not, and a stamp that comes late changes nothing.
func TestHeardSilences(t *testing.T) {
	h := Heard{RememberFrom: 3 * time.Second}
	at := time.Duration(0)
	hear := func(after time.Duration) {
		at += after
		h.heardAt(at)
	}
	hear(time.Hour) // the first thing heard ends no silence, however late it comes
	hear(2999 * time.Millisecond)
	hear(3 * time.Second)
	if got := h.Silences(); len(got) != 1 || got[0].Length != 3*time.Second || !got[0].Ended.Equal(epoch.Add(at)) {
		t.Fatalf("Silences = %v, want the one of 3s, ended at %s", got, epoch.Add(at))
	}
	h.heardAt(at - 4*time.Second) // read the clock before the last, stamped after it
	if got := h.Last(); !got.Equal(epoch.Add(at)) {
		t.Errorf("Last = %s after a late stamp, want it left at %s", got, epoch.Add(at))
	}
	hear(time.Second)
	if got := h.Silences(); len(got) != 1 {
		t.Errorf("Silences = %v after a late stamp and a gap of 1s, want still the one", got)
	}
	for i := range silencesRemembered {
		hear(time.Duration(10+i) * time.Second)
	}
	got := h.Silences()
	if len(got) != silencesRemembered {
		t.Fatalf("%d silences remembered, want %d", len(got), silencesRemembered)
	}
	if first, last := got[0].Length, got[len(got)-1].Length; first != 10*time.Second || last != time.Duration(10+silencesRemembered-1)*time.Second {
		t.Errorf("silences from %s to %s, want the latest %d, oldest first (10s to %ds)", first, last, silencesRemembered, 10+silencesRemembered-1)
	}
	var never Heard
	never.heardAt(time.Second)
	never.heardAt(time.Hour)
	if got := never.Silences(); len(got) != 0 {
		t.Errorf("Silences = %v without RememberFrom, want none", got)
	}
}
