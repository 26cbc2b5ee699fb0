// Package htmlreport renders a stored run as one self-contained HTML page: the headline
// figures, latency histograms (the client's view with and without the proxy; the probes' view
// inside the pod: edge, application, proxy-added) and the per-pod table. The charts are inline
// SVG and the page loads nothing, so it opens in a browser without any network.
package htmlreport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/perf"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/probe/histogram"
	"github.com/kubectl-mesh/kubectl-mesh/smps"
)

// Series is one latency distribution: Count requests between LoMs and HiMs per bucket.
type Series struct {
	Name    string
	Color   string
	Buckets []Bucket
}

// Bucket is a range of latencies in milliseconds and how many requests fell in it.
type Bucket struct {
	LoMs, HiMs float64
	Count      float64
}

func (s Series) total() float64 {
	var n float64
	for _, b := range s.Buckets {
		n += b.Count
	}
	return n
}

// Render writes the page for a run from its stored documents.
func Render(w io.Writer, rec *runstore.Record, docs map[string][]byte) error {
	page := pageData{Record: rec, Generated: time.Now().UTC().Format(time.RFC3339)}
	var client []Series
	for _, d := range []struct{ doc, name, color string }{
		{perf.DocLoad, "with the proxy (" + rec.Target + ")", "#d62728"},
		{perf.DocBaselineLoad, "without the proxy (" + rec.Spec.Baseline + ")", "#1f77b4"},
	} {
		b, ok := docs[d.doc]
		if !ok {
			continue
		}
		var r loadgen.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", d.doc, err)
		}
		s := Series{Name: d.name, Color: d.color}
		for _, bk := range r.HistogramMs {
			s.Buckets = append(s.Buckets, Bucket{LoMs: bk.StartMs, HiMs: bk.EndMs, Count: float64(bk.Count)})
		}
		client = append(client, s)
	}
	if len(client) > 0 {
		page.Charts = append(page.Charts, chart("Client latency (load generator)", client))
	}

	if b, ok := docs[perf.DocProbes]; ok {
		var recs []perf.ProbeRecord
		if err := json.Unmarshal(b, &recs); err != nil {
			return fmt.Errorf("%s: %w", perf.DocProbes, err)
		}
		merged := map[string]*histogram.Histogram{}
		for _, pr := range recs {
			if pr.Snapshot == nil {
				continue
			}
			pr.Snapshot.Histograms.Each(func(name string, sp *histogram.Sparse) {
				h, err := histogram.FromSparse(*sp)
				if err != nil {
					page.Notes = append(page.Notes, fmt.Sprintf("pod %s: %s histogram unreadable: %v", pr.Pod, name, err))
					return
				}
				if merged[name] == nil {
					merged[name] = h
					return
				}
				merged[name].Merge(h)
			})
		}
		var inside []Series
		for _, d := range []struct{ key, name, color string }{
			{"edge", "pod edge (eth0): what the client's request spent in the pod", "#9467bd"},
			{"app", "application (behind the proxy, on lo)", "#2ca02c"},
			{"proxyAdded", "proxy-added (edge - application)", "#ff7f0e"},
		} {
			h := merged[d.key]
			if h == nil || h.Count() == 0 {
				continue
			}
			s := Series{Name: d.name, Color: d.color}
			for _, bk := range h.Buckets() {
				s.Buckets = append(s.Buckets, Bucket{LoMs: ms(bk.Lo), HiMs: ms(bk.Hi), Count: float64(bk.Count)})
			}
			inside = append(inside, s)
		}
		if len(inside) > 0 {
			page.Charts = append(page.Charts, chart("Inside the pods (probes, all target pods merged)", inside))
		} else {
			page.Notes = append(page.Notes, "the probes recorded no latency histograms for this run")
		}
	}

	if b, ok := docs[perf.DocOverhead]; ok {
		var o smps.OverheadReport
		if err := smps.Decode(bytes.NewReader(b), &o); err != nil {
			return fmt.Errorf("%s: %w", perf.DocOverhead, err)
		}
		page.Overhead = &o
	}
	return pageTemplate.Execute(w, page)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type pageData struct {
	Record    *runstore.Record
	Generated string
	Charts    []Chart
	Overhead  *smps.OverheadReport
	Notes     []string
}

// Chart is a drawn SVG: lines per series over log-spaced latency bins.
type Chart struct {
	Title  string
	SVG    template.HTML
	Legend []Series
}

// Chart geometry, in SVG user units.
const (
	width, height          = 760.0, 280.0
	left, right, top, base = 56.0, 16.0, 12.0, 40.0
	bins                   = 60
)

// chart draws the series on a common log-scale latency axis; y is the share of each series'
// requests per bin, so that runs of different lengths compare.
func chart(title string, series []Series) Chart {
	lo, hi := math.Inf(1), 0.0
	for _, s := range series {
		for _, b := range s.Buckets {
			if b.Count <= 0 {
				continue
			}
			lo = math.Min(lo, math.Max(b.LoMs, 0.001))
			hi = math.Max(hi, b.HiMs)
		}
	}
	if math.IsInf(lo, 1) || hi <= lo {
		lo, hi = 0.001, 1
	}
	llo, lhi := math.Log10(lo), math.Log10(hi)
	edge := func(i int) float64 { return math.Pow(10, llo+(lhi-llo)*float64(i)/bins) }
	shares := make([][]float64, len(series))
	maxShare := 0.0
	for si, s := range series {
		shares[si] = make([]float64, bins)
		total := s.total()
		if total == 0 {
			continue
		}
		for _, b := range s.Buckets {
			blo, bhi := math.Max(b.LoMs, lo), math.Max(b.HiMs, lo)
			if bhi <= blo {
				// A bucket narrower than the axis' resolution: all of it in one bin.
				shares[si][binOf(blo, llo, lhi)] += b.Count / total
				continue
			}
			// Spread the bucket over the bins it overlaps, uniformly in latency.
			for i := binOf(blo, llo, lhi); i < bins; i++ {
				e0, e1 := edge(i), edge(i+1)
				if e0 >= bhi {
					break
				}
				overlap := math.Min(e1, bhi) - math.Max(e0, blo)
				if overlap > 0 {
					shares[si][i] += b.Count / total * overlap / (bhi - blo)
				}
			}
		}
		for _, v := range shares[si] {
			maxShare = math.Max(maxShare, v)
		}
	}
	if maxShare == 0 {
		maxShare = 1
	}
	x := func(v float64) float64 { return left + (math.Log10(v)-llo)/(lhi-llo)*(width-left-right) }
	y := func(share float64) float64 { return height - base - share/maxShare*(height-base-top) }

	var svg strings.Builder
	fmt.Fprintf(&svg, `<svg viewBox="0 0 %g %g" width="%g" height="%g" role="img" xmlns="http://www.w3.org/2000/svg">`, width, height, width, height)
	fmt.Fprintf(&svg, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>`, left, top, width-left-right, height-base-top)
	// Decade ticks, plus 2 and 5 within each decade when there are few decades.
	for d := math.Floor(llo); d <= math.Ceil(lhi); d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if v < lo || v > hi || (m != 1 && lhi-llo > 3) {
				continue
			}
			xv := x(v)
			fmt.Fprintf(&svg, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#ddd"/>`, xv, top, xv, height-base)
			fmt.Fprintf(&svg, `<text x="%.1f" y="%g" font-size="11" text-anchor="middle">%s</text>`, xv, height-base+14, template.HTMLEscapeString(tick(v)))
		}
	}
	fmt.Fprintf(&svg, `<text x="%g" y="%g" font-size="12" text-anchor="middle">latency (ms, log scale)</text>`, left+(width-left-right)/2, height-6)
	fmt.Fprintf(&svg, `<text x="14" y="%g" font-size="12" text-anchor="middle" transform="rotate(-90 14 %g)">share of requests</text>`, (height-base+top)/2, (height-base+top)/2)
	fmt.Fprintf(&svg, `<text x="%g" y="%g" font-size="11" text-anchor="end">%.1f%%</text>`, left-4, top+10, maxShare*100)
	for si, s := range series {
		var pts []string
		for i := 0; i < bins; i++ {
			xm := x(math.Sqrt(edge(i) * edge(i+1)))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xm, y(shares[si][i])))
		}
		fmt.Fprintf(&svg, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.Color, strings.Join(pts, " "))
	}
	svg.WriteString(`</svg>`)
	return Chart{Title: title, SVG: template.HTML(svg.String()), Legend: series} // #nosec: built from numbers and escaped text only
}

func binOf(v, llo, lhi float64) int {
	i := int((math.Log10(v) - llo) / (lhi - llo) * bins)
	return max(0, min(bins-1, i))
}

func tick(v float64) string {
	switch {
	case v >= 1:
		return fmt.Sprintf("%g", v)
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
	}
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"ms": func(f float64) string { return fmt.Sprintf("%.3f", f) },
	"msp": func(f *float64) string {
		if f == nil {
			return "-"
		}
		return fmt.Sprintf("%.3f", *f)
	},
	"sub": func(a float64, b *float64) string {
		if b == nil {
			return "-"
		}
		return fmt.Sprintf("%+.3f", a-*b)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>kubectl mesh perf run {{.Record.Name}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.legend span{display:inline-block;width:1.5em;height:.3em;margin-right:.4em;vertical-align:middle}
.note{color:#8a5a00}
</style></head><body>
<h1>Run {{.Record.Name}} <small>(namespace {{.Record.Namespace}})</small></h1>
<p>Status <b>{{.Record.Status}}</b>{{with .Record.Message}}: {{.}}{{end}}.
Target {{.Record.Target}} ({{.Record.URL}}): {{.Record.Spec.QPS}} qps requested over {{.Record.Spec.Connections}} connections for {{.Record.Spec.Duration}}, {{.Record.Spec.Protocol}}.
{{with .Record.Start}}Measured from {{.Format "2006-01-02 15:04:05 MST"}}{{end}}{{with .Record.End}} to {{.Format "15:04:05 MST"}}{{end}}.</p>
{{with .Record.Summary}}
<table>
<tr><th>latency (ms)</th><th>p50</th><th>p90</th><th>p99</th></tr>
<tr><td>client, with the proxy</td><td>{{ms .ClientP50}}</td><td>{{ms .ClientP90}}</td><td>{{ms .ClientP99}}</td></tr>
{{if .BaselineP50}}<tr><td>client, without the proxy</td><td>{{msp .BaselineP50}}</td><td>{{msp .BaselineP90}}</td><td>{{msp .BaselineP99}}</td></tr>
<tr><td>client difference</td><td>{{sub .ClientP50 .BaselineP50}}</td><td>{{sub .ClientP90 .BaselineP90}}</td><td>{{sub .ClientP99 .BaselineP99}}</td></tr>{{end}}
<tr><td>proxy-added (probes)</td><td>{{msp .ProxyAddedP50}}</td><td>{{msp .ProxyAddedP90}}</td><td>{{msp .ProxyAddedP99}}</td></tr>
</table>
<p>{{.Requests}} requests, {{.Errors}} errors, {{printf "%.1f" .ActualQPS}} qps achieved; probes answered for {{.Probed}} of {{.Pods}} target pods{{with .ProxyCPUMillicores}}; proxy CPU {{printf "%.1f" .}} millicores{{end}}.</p>
{{end}}
{{range .Charts}}
<h2>{{.Title}}</h2>
{{.SVG}}
<div class="legend">{{range .Legend}}<div><span style="background:{{.Color}}"></span>{{.Name}}</div>{{end}}</div>
{{end}}
{{with .Overhead}}
<h2>Per pod</h2>
<table>
<tr><th>pod</th><th>probe</th><th>requests</th><th>proxy-added p50</th><th>p90</th><th>p99 (ms)</th><th>proxy CPU ms / 1000 requests</th></tr>
{{range .Pods}}<tr><td>{{.Name}}</td><td>{{.Probe.Status}}</td><td>{{.Requests}}</td>
{{with .ProxyAddedLatencyMs}}<td>{{ms .P50}}</td><td>{{ms .P90}}</td><td>{{ms .P99}}</td>{{else}}<td>-</td><td>-</td><td>-</td>{{end}}
<td>{{msp .ProxyCPUMsPer1000Requests}}</td></tr>
{{end}}</table>
{{end}}
{{range .Notes}}<p class="note">{{.}}</p>{{end}}
<p><small>Generated by kubectl mesh at {{.Generated}}. The probe measures inside each pod with eBPF: the pod edge is where the client's traffic enters the pod, the application is the connection between the proxy and the application; proxy-added is their difference per request.</small></p>
</body></html>
`))
