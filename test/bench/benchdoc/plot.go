package benchdoc

import (
	"bytes"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// maxPoints bounds the points of one curve: 10,000 pods drawn one by one make a large SVG no eye can tell
// from a thinned one.
const maxPoints = 500

// SVG draws p.
func SVG(p Plot) ([]byte, error) {
	var (
		pl  *plot.Plot
		err error
	)
	switch p.Kind {
	case RunningPlot:
		pl, err = runningPlot(p)
	case TimelinePlot:
		pl, err = timelinePlot(p)
	default:
		err = fmt.Errorf("unknown plot kind %d", p.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.File, err)
	}
	w, err := pl.WriterTo(7*vg.Inch, 4*vg.Inch, "svg")
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if _, err := w.WriteTo(&out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// runningPlot is each path's time to Running (y) against the pods Running so far (x): the curve of a
// path that keeps up with the other lies on or below it.
func runningPlot(p Plot) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.X.Label.Text = "pods Running"
	pl.Y.Label.Text = "seconds from the start"
	pl.Legend.Top, pl.Legend.Left = true, true
	pl.X.Min, pl.Y.Min = 0, 0 // from the start: the gap between the curves reads true
	for i, s := range p.Result.Running {
		line, err := plotter.NewLine(curve(s.Seconds))
		if err != nil {
			return nil, fmt.Errorf("series %q: %w", s.Path, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		pl.Add(line)
		pl.Legend.Add(s.Path, line)
	}
	pl.Add(plotter.NewGrid())
	return pl, nil
}

// curve is a sorted series as points (n-th pod Running, its seconds), thinned to about maxPoints with the
// first and last kept.
func curve(sorted []float64) plotter.XYs {
	step := max(1, (len(sorted)+maxPoints-1)/maxPoints)
	var xys plotter.XYs
	for i := 0; i < len(sorted); i += step {
		xys = append(xys, plotter.XY{X: float64(i + 1), Y: sorted[i]})
	}
	if n := len(sorted); n > 0 && (n-1)%step != 0 {
		xys = append(xys, plotter.XY{X: float64(n), Y: sorted[n-1]})
	}
	return xys
}

// timelinePlot draws each phase on a row of its own, the first on top: a thin line from the event to its
// first sighting (the wait), a bar from its first to its last sighting, and the last one's time beside it.
func timelinePlot(p Plot) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.X.Label.Text = "seconds from " + p.Result.PhasesFrom
	phases := p.Result.Phases
	names := make([]string, len(phases))
	var lasts plotter.XYLabels
	for i, ph := range phases {
		row := float64(len(phases) - 1 - i)
		names[len(phases)-1-i] = ph.What
		if !ph.Seen {
			continue
		}
		wait, err := plotter.NewLine(plotter.XYs{{X: 0, Y: row}, {X: ph.First, Y: row}})
		if err != nil {
			return nil, fmt.Errorf("phase %q: %w", ph.What, err)
		}
		wait.Color = color.Gray{Y: 0xb0}
		bar, err := plotter.NewLine(plotter.XYs{{X: ph.First, Y: row}, {X: ph.Last, Y: row}})
		if err != nil {
			return nil, fmt.Errorf("phase %q: %w", ph.What, err)
		}
		bar.Width = vg.Points(8)
		bar.Color = plotutil.Color(0)
		ends, err := plotter.NewScatter(plotter.XYs{{X: ph.First, Y: row}, {X: ph.Last, Y: row}})
		if err != nil {
			return nil, fmt.Errorf("phase %q: %w", ph.What, err)
		}
		ends.Shape = draw.BoxGlyph{}
		ends.Color = color.Black
		pl.Add(wait, bar, ends)
		lasts.XYs = append(lasts.XYs, plotter.XY{X: ph.Last, Y: row})
		lasts.Labels = append(lasts.Labels, "+"+Format(ph.Last)+" s")
	}
	if len(lasts.XYs) > 0 {
		labels, err := plotter.NewLabels(lasts)
		if err != nil {
			return nil, err
		}
		labels.Offset = vg.Point{X: vg.Points(6), Y: vg.Points(-3)}
		pl.Add(labels)
	}
	pl.NominalY(names...)
	// Every phase keeps its row, one not seen too (as an empty row), and no bar sits on the frame.
	pl.Y.Min, pl.Y.Max = -0.5, float64(len(phases))-0.5
	pl.X.Min = 0
	pl.X.Max = 5 * math.Ceil(pl.X.Max*1.12/5) // room for the last label, on a round number the ticks like
	pl.Add(plotter.NewGrid())
	return pl, nil
}
