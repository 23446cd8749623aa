package audit

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/pricing"
)

// Markdown renders r as Markdown.
func Markdown(r Report) []byte {
	var b bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Gatehouse audit report: %s\n\n", r.Name)
	p("Period %s to %s (generated %s, id %s).\n\n", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.GeneratedAt.Format(time.RFC3339), r.ID)
	p("## Spend\n\n%s in %d calls (previous period: %s in %d calls, %s).\n\n", pricing.FormatUSD(r.Spend.CostMicros), r.Spend.Calls,
		pricing.FormatUSD(r.Spend.PrevCostMicros), r.Spend.PrevCalls, change(r.Spend.CostMicros, r.Spend.PrevCostMicros))
	for _, g := range []struct {
		title string
		lines []SpendLine
	}{{"team", r.Spend.ByTeam}, {"principal", r.Spend.ByPrincipal}, {"key", r.Spend.ByKey}, {"model", r.Spend.ByModel}} {
		if len(g.lines) == 0 {
			continue
		}
		p("### By %s\n\n| %s | spend | calls | previous | change |\n|---|---:|---:|---:|---:|\n", g.title, g.title)
		for _, l := range g.lines {
			p("| %s | %s | %d | %s | %s |\n", mdCell(label(l)), pricing.FormatUSD(l.CostMicros), l.Calls, pricing.FormatUSD(l.PrevCostMicros), change(l.CostMicros, l.PrevCostMicros))
		}
		p("\n")
	}
	p("## Findings\n\n%d opened, %d resolved in the period; %d still open (high %d, medium %d, low %d).\n\n",
		len(r.Findings.Opened), len(r.Findings.Resolved), len(r.Findings.Open), r.Findings.BySeverity["high"], r.Findings.BySeverity["medium"], r.Findings.BySeverity["low"])
	if len(r.Findings.Open) > 0 {
		p("| id | severity | rule | subject | state | first seen |\n|---|---|---|---|---|---|\n")
		for _, f := range r.Findings.Open {
			p("| %s | %s | %s | %s | %s | %s |\n", f.ID, f.Severity, f.Rule, mdCell(f.Title), f.State, f.FirstSeen.Format(time.DateOnly))
		}
		p("\n")
	}
	if len(r.Findings.Resolved) > 0 {
		p("Resolved:\n\n")
		for _, f := range r.Findings.Resolved {
			p("- %s %s: %s (by %s: %s)\n", f.ID, f.Rule, mdCell(f.Title), f.StateBy, mdCell(f.StateReason))
		}
		p("\n")
	}
	p("## Permission inventory\n\n| key | kind | owner | scope | budgets | limits | expires | age (days) | last use | MFA | PoP | state |\n|---|---|---|---|---|---|---|---:|---|---|---|---|\n")
	for _, k := range r.Keys {
		p("| %s (%s) | %s | %s | %s | %s | %s | %s | %d | %s | %v | %v | %s |\n", mdCell(k.Name), k.ID, k.Kind, mdCell(k.Owner), mdCell(scopeText(k)), mdCell(strings.Join(k.Budgets, "; ")),
			mdCell(strings.Join(k.Limits, "; ")), optTime(k.ExpiresAt), k.AgeDays, optTime(k.LastUsedAt), k.MFARequired, k.PoP, k.State)
	}
	p("\nAdministrators:\n\n")
	for _, a := range r.Admins {
		p("- %s (%s, %s): second factor %v, disabled %v\n", mdCell(a.Name), a.ID, a.Kind, a.MFA, a.Disabled)
	}
	p("\n## Access reviews\n\n")
	if len(r.Reviews) == 0 {
		p("No review campaign.\n")
	}
	for _, c := range r.Reviews {
		p("- %s (%s, due %s): %s; %d of %d decided (%d kept, %d revoked, %d reduced, %d escalated)\n", c.ID, c.Scope, c.Due.Format(time.DateOnly), c.State,
			c.Counts.Decided, c.Counts.Total, c.Counts.Kept, c.Counts.Revoked, c.Counts.Reduced, c.Counts.Escalated)
	}
	p("\n## Log integrity\n\n%s\n", logText(r.Log))
	return b.Bytes()
}

func label(l SpendLine) string {
	if l.Name != "" && l.Name != l.Group {
		return l.Name + " (" + l.Group + ")"
	}
	return l.Group
}

func scopeText(k KeyEntry) string {
	var parts []string
	if len(k.Scope.Models) > 0 {
		parts = append(parts, "models "+strings.Join(k.Scope.Models, ","))
	}
	if len(k.Scope.Endpoints) > 0 {
		parts = append(parts, "endpoints "+strings.Join(k.Scope.Endpoints, ","))
	}
	if len(k.Scope.CIDRs) > 0 {
		parts = append(parts, "from "+strings.Join(k.Scope.CIDRs, ","))
	}
	if len(parts) == 0 {
		return "unscoped"
	}
	return strings.Join(parts, "; ")
}

func logText(c *LogCheck) string {
	switch {
	case c == nil:
		return "The log has not been verified."
	case c.OK:
		return fmt.Sprintf("Verified %s: %d records, root %s.", c.At.Format(time.RFC3339), c.Size, c.Root)
	}
	last := "never"
	if !c.LastGood.IsZero() {
		last = c.LastGood.Format(time.RFC3339)
	}
	return fmt.Sprintf("FAILED verification at %s: %s (last good: %s).", c.At.Format(time.RFC3339), c.Error, last)
}

func optTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.DateOnly)
}

func mdCell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ", "<", "&lt;").Replace(s)
}

func change(cur, prev int64) string {
	if prev == 0 {
		if cur == 0 {
			return "0%"
		}
		return "new"
	}
	return fmt.Sprintf("%+d%%", (cur-prev)*100/prev)
}

// CSV renders the report's spend lines as CSV (dimension, group, name, cost
// in micro-dollars, calls, previous cost, previous calls).
func CSV(r Report) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"dimension", "group", "name", "cost_micros", "calls", "previous_cost_micros", "previous_calls"})
	for _, g := range []struct {
		dim   string
		lines []SpendLine
	}{{"team", r.Spend.ByTeam}, {"principal", r.Spend.ByPrincipal}, {"key", r.Spend.ByKey}, {"model", r.Spend.ByModel}, {"day", r.Spend.ByDay}} {
		for _, l := range g.lines {
			w.Write([]string{g.dim, csvSafe(l.Group), csvSafe(l.Name), strconv.FormatInt(l.CostMicros, 10), strconv.FormatInt(l.Calls, 10),
				strconv.FormatInt(l.PrevCostMicros, 10), strconv.FormatInt(l.PrevCalls, 10)})
		}
	}
	w.Flush()
	return b.Bytes()
}

// csvSafe defuses cells a spreadsheet would run as formulas.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// bar is one bar of a chart.
type bar struct {
	Label string
	Value int64
	Text  string
	Color string
}

// svgBars draws a horizontal bar chart as inline SVG (no external asset).
func svgBars(title string, bars []bar) template.HTML {
	const width, rowH, labelW = 640, 22, 200
	var max int64 = 1
	for _, b := range bars {
		max = maxInt(max, b.Value)
	}
	h := rowH*len(bars) + 30
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="%s" width="%d" height="%d" viewBox="0 0 %d %d">`, template.HTMLEscapeString(title), width, h, width, h)
	fmt.Fprintf(&s, `<text x="0" y="16" font-size="14" font-weight="bold">%s</text>`, template.HTMLEscapeString(title))
	for i, b := range bars {
		y := 26 + i*rowH
		w := int(float64(width-labelW-90) * float64(b.Value) / float64(max))
		color := b.Color
		if color == "" {
			color = "#3b6ea8"
		}
		fmt.Fprintf(&s, `<text x="0" y="%d" font-size="12">%s</text>`, y+14, template.HTMLEscapeString(truncate(b.Label, 30)))
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, labelW, y+2, max1(w), rowH-6, color)
		fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="12">%s</text>`, labelW+max1(w)+6, y+14, template.HTMLEscapeString(b.Text))
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String()) // every text inside is escaped above
}

// svgColumns draws spend over time as vertical columns.
func svgColumns(title string, bars []bar) template.HTML {
	const width, height, top, bottom = 640, 220, 26, 40
	var max int64 = 1
	for _, b := range bars {
		max = maxInt(max, b.Value)
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="%s" width="%d" height="%d" viewBox="0 0 %d %d">`, template.HTMLEscapeString(title), width, height, width, height)
	fmt.Fprintf(&s, `<text x="0" y="16" font-size="14" font-weight="bold">%s</text>`, template.HTMLEscapeString(title))
	if len(bars) > 0 {
		colW := (width - 20) / len(bars)
		for i, b := range bars {
			hgt := int(float64(height-top-bottom) * float64(b.Value) / float64(max))
			x := 10 + i*colW
			fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%d" height="%d" fill="#3b6ea8"><title>%s: %s</title></rect>`, x, height-bottom-hgt, max1(colW-4), hgt,
				template.HTMLEscapeString(b.Label), template.HTMLEscapeString(b.Text))
			if len(bars) <= 16 || i%(len(bars)/8+1) == 0 {
				fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="10">%s</text>`, x, height-bottom+14, template.HTMLEscapeString(b.Label))
			}
		}
	}
	fmt.Fprintf(&s, `<text x="10" y="%d" font-size="11">max %s per day</text>`, height-6, template.HTMLEscapeString(pricing.FormatUSD(max)))
	s.WriteString(`</svg>`)
	return template.HTML(s.String())
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"usd": pricing.FormatUSD, "change": change, "date": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"opt": optTime, "scope": scopeText, "label": label, "join": strings.Join, "log": logText,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Gatehouse audit report: {{.R.Name}}</title>
<style>
body{font-family:system-ui,-apple-system,sans-serif;margin:2em auto;max-width:1100px;color:#1d2330}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #d5d9e0;padding:4px 8px;text-align:left}
td.n{text-align:right}.high{color:#b3261e;font-weight:bold}.medium{color:#a15c00}.low{color:#3b6ea8}
.charts{display:flex;flex-wrap:wrap;gap:2em}
</style></head><body>
<h1>Gatehouse audit report: {{.R.Name}}</h1>
<p>Period {{date .R.From}} to {{date .R.To}}; generated {{date .R.GeneratedAt}}; id {{.R.ID}}.</p>
<h2>Spend</h2>
<p>{{usd .R.Spend.CostMicros}} in {{.R.Spend.Calls}} calls; previous period {{usd .R.Spend.PrevCostMicros}} in {{.R.Spend.PrevCalls}} calls ({{change .R.Spend.CostMicros .R.Spend.PrevCostMicros}}).</p>
<div class="charts">{{.Daily}}{{.TopKeys}}{{.Severity}}</div>
{{range .Groups}}{{if .Lines}}<h3>By {{.Title}}</h3>
<table><tr><th>{{.Title}}</th><th>spend</th><th>calls</th><th>previous</th><th>change</th></tr>
{{range .Lines}}<tr><td>{{label .}}</td><td class="n">{{usd .CostMicros}}</td><td class="n">{{.Calls}}</td><td class="n">{{usd .PrevCostMicros}}</td><td class="n">{{change .CostMicros .PrevCostMicros}}</td></tr>
{{end}}</table>{{end}}{{end}}
<h2>Findings</h2>
<p>{{len .R.Findings.Opened}} opened and {{len .R.Findings.Resolved}} resolved in the period; {{len .R.Findings.Open}} still open.</p>
<table><tr><th>id</th><th>severity</th><th>rule</th><th>finding</th><th>state</th><th>first seen</th><th>evidence</th></tr>
{{range .R.Findings.Open}}<tr><td>{{.ID}}</td><td class="{{.Severity}}">{{.Severity}}</td><td>{{.Rule}}</td><td>{{.Title}}</td><td>{{.State}}</td><td>{{date .FirstSeen}}</td><td>{{.Evidence.Summary}}</td></tr>
{{end}}</table>
<h2>Permission inventory</h2>
<table><tr><th>key</th><th>kind</th><th>owner</th><th>scope</th><th>budgets</th><th>limits</th><th>expires</th><th>age (days)</th><th>last use</th><th>MFA</th><th>PoP</th><th>state</th></tr>
{{range .R.Keys}}<tr><td>{{.Name}} ({{.ID}})</td><td>{{.Kind}}</td><td>{{.Owner}}</td><td>{{scope .}}</td><td>{{join .Budgets "; "}}</td><td>{{join .Limits "; "}}</td><td>{{opt .ExpiresAt}}</td><td class="n">{{.AgeDays}}</td><td>{{opt .LastUsedAt}}</td><td>{{.MFARequired}}</td><td>{{.PoP}}</td><td>{{.State}}</td></tr>
{{end}}</table>
<h3>Administrators</h3>
<table><tr><th>name</th><th>id</th><th>kind</th><th>second factor</th><th>disabled</th></tr>
{{range .R.Admins}}<tr><td>{{.Name}}</td><td>{{.ID}}</td><td>{{.Kind}}</td><td>{{.MFA}}</td><td>{{.Disabled}}</td></tr>
{{end}}</table>
<h2>Access reviews</h2>
{{if not .R.Reviews}}<p>No review campaign.</p>{{end}}
<table>{{range .R.Reviews}}<tr><td>{{.ID}}</td><td>{{.Scope}}</td><td>{{.State}}</td><td>due {{date .Due}}</td><td>{{.Counts.Decided}} of {{.Counts.Total}} decided; {{.Counts.Revoked}} revoked, {{.Counts.Escalated}} escalated</td></tr>
{{end}}</table>
<h2>Log integrity</h2>
<p>{{log .R.Log}}</p>
</body></html>
`))

// HTML renders r as one self-contained HTML file with inline SVG charts
// (spend over time, top keys, open findings by severity); it loads nothing.
func HTML(r Report) []byte {
	var daily, top []bar
	for _, d := range r.Spend.ByDay {
		daily = append(daily, bar{Label: strings.TrimPrefix(d.Group[min(5, len(d.Group)):], ""), Value: d.CostMicros, Text: pricing.FormatUSD(d.CostMicros)})
	}
	for i, k := range r.Spend.ByKey {
		if i == 10 {
			break
		}
		top = append(top, bar{Label: label(k), Value: k.CostMicros, Text: pricing.FormatUSD(k.CostMicros)})
	}
	sev := []bar{
		{Label: "high", Value: int64(r.Findings.BySeverity["high"]), Text: strconv.Itoa(r.Findings.BySeverity["high"]), Color: "#b3261e"},
		{Label: "medium", Value: int64(r.Findings.BySeverity["medium"]), Text: strconv.Itoa(r.Findings.BySeverity["medium"]), Color: "#d08a00"},
		{Label: "low", Value: int64(r.Findings.BySeverity["low"]), Text: strconv.Itoa(r.Findings.BySeverity["low"]), Color: "#3b6ea8"},
	}
	var b bytes.Buffer
	err := htmlReport.Execute(&b, map[string]any{"R": r, "Daily": svgColumns("Spend per day", daily), "TopKeys": svgBars("Top keys by spend", top),
		"Severity": svgBars("Open findings by severity", sev),
		"Groups": []map[string]any{{"Title": "team", "Lines": r.Spend.ByTeam}, {"Title": "principal", "Lines": r.Spend.ByPrincipal},
			{"Title": "key", "Lines": r.Spend.ByKey}, {"Title": "model", "Lines": r.Spend.ByModel}}})
	if err != nil {
		panic(fmt.Sprintf("audit: report template: %v", err)) // the template and its data are ours
	}
	return b.Bytes()
}
