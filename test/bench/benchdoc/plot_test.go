package benchdoc

import (
	"strings"
	"testing"
)

func TestSVGDrawsEveryPlot(t *testing.T) {
	for _, p := range Plots(fixture()) {
		t.Run(p.File, func(t *testing.T) {
			svg, err := SVG(p)
			if err != nil {
				t.Fatal(err)
			}
			text := string(svg)
			if !strings.Contains(text, "<svg") {
				t.Fatalf("not an SVG: %.200s", text)
			}
			// Labels are drawn as text: the title, and each series' legend or each phase's name and last time.
			want := []string{p.Title}
			for _, s := range p.Result.Running {
				want = append(want, s.Path)
			}
			for _, ph := range p.Result.Phases {
				want = append(want, ph.What)
				if ph.Seen {
					want = append(want, "+"+Format(ph.Last)+" s")
				}
			}
			for _, w := range want {
				if !strings.Contains(text, escape(w)) {
					t.Errorf("SVG lacks %q", w)
				}
			}
		})
	}
}

// escape is how the SVG writer spells text with an apostrophe.
func escape(s string) string { return strings.ReplaceAll(s, "'", "&#39;") }

func TestSVGRefusesAnUnknownKind(t *testing.T) {
	if _, err := SVG(Plot{File: "x.svg", Kind: PlotKind(7)}); err == nil || !strings.Contains(err.Error(), "unknown plot kind") {
		t.Errorf("SVG of an unknown kind: err %v", err)
	}
}

func TestCurve(t *testing.T) {
	ramp := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(i) / 10
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		series    []float64
		points    int
		lastX     float64
		lastY     float64
		firstX    float64
		firstY    float64
		emptyCase bool
	}{
		{name: "empty", series: nil, emptyCase: true},
		{name: "small, every pod", series: []float64{1, 2, 3}, points: 3, firstX: 1, firstY: 1, lastX: 3, lastY: 3},
		{name: "exactly maxPoints", series: ramp(maxPoints), points: maxPoints, firstX: 1, lastX: maxPoints, lastY: float64(maxPoints-1) / 10},
		{name: "10,000 thinned, last kept", series: ramp(10000), points: 501, firstX: 1, lastX: 10000, lastY: 999.9},
		{name: "1,001 thinned, last kept", series: ramp(1001), points: 335, firstX: 1, lastX: 1001, lastY: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xys := curve(tc.series)
			if tc.emptyCase {
				if len(xys) != 0 {
					t.Fatalf("curve of nothing: %v", xys)
				}
				return
			}
			if len(xys) != tc.points {
				t.Errorf("%d points; want %d", len(xys), tc.points)
			}
			first, last := xys[0], xys[len(xys)-1]
			if first.X != tc.firstX || first.Y != tc.firstY || last.X != tc.lastX || last.Y != tc.lastY {
				t.Errorf("first %v last %v; want (%v, %v) and (%v, %v)", first, last, tc.firstX, tc.firstY, tc.lastX, tc.lastY)
			}
		})
	}
}
