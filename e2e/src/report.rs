//! Self-contained HTML report for the Sluice demo.
//!
//! [`render`] turns a [`Report`] into one HTML document with inline CSS and
//! inline SVG charts. The page loads nothing from the network (no scripts,
//! fonts or images); hover details use native SVG `<title>` tooltips.
//!
//! Chart rules:
//! * x axis: seconds since the release started (`Release::started`), from 0 to
//!   the later of `ended` and the last sample, rounded up to a "nice" tick.
//!   Samples before the start are not drawn; marks outside the range are
//!   clamped to its edges.
//! * left axis: canary weight 0–100 %, drawn as a step line over a filled area.
//! * right axis: success rate. One scale for the whole report so charts compare:
//!   80–100 % if every success value is ≥ 0.8, else 60–100 % if every value is
//!   ≥ 0.6, else 0–100 %. Gaps where a value is `None` or not finite.
//! * Non-finite numbers (NaN, ±inf) are skipped, never drawn.

use std::fmt::Write as _;

/// Seconds since the demo started.
pub type Secs = f64;

/// One observation of the router and Prometheus.
#[derive(Debug, Clone)]
pub struct Sample {
    pub t: Secs,
    /// Percent of traffic on the canary (0-100), as the router says.
    pub canary_weight: f64,
    /// Success rate (0..1) of the canary and stable versions over the last window, from Prometheus; None when no data.
    pub canary_success: Option<f64>,
    pub stable_success: Option<f64>,
}

/// What a [`Mark`] stands for; decides its colour on the chart.
#[derive(Debug, Clone)]
pub enum MarkKind {
    Step,
    AnalysisPassed,
    AnalysisFailed,
    Breach,
    Abort,
    Safe,
    Promoted,
    Info,
}

/// An event drawn as a vertical dashed line with a label.
#[derive(Debug, Clone)]
pub struct Mark {
    pub t: Secs,
    pub kind: MarkKind,
    pub label: String,
}

/// One canary release: a chart section in the report.
#[derive(Debug, Clone)]
pub struct Release {
    /// e.g. "v2 (good): promoted"
    pub title: String,
    /// e.g. "v2"
    pub version: String,
    pub started: Secs,
    pub ended: Option<Secs>,
    /// e.g. "Promoted in 48 s" or "Rolled back: metric success-rate failed with 0.79 (< 0.95)"
    pub outcome: String,
    /// true when it ended as it should (green), false otherwise
    pub ok: bool,
    pub samples: Vec<Sample>,
    pub marks: Vec<Mark>,
    /// Key figures shown as a table under the chart, e.g. ("Time to safe", "6.2 s").
    pub figures: Vec<(String, String)>,
}

/// The whole demo report.
#[derive(Debug, Clone)]
pub struct Report {
    /// "Sluice demo"
    pub title: String,
    /// strategy, cluster, date
    pub subtitle: String,
    pub releases: Vec<Release>,
    /// short paragraphs explaining what happened, shown under the charts
    pub notes: Vec<String>,
}

// ---------------------------------------------------------------------------
// Geometry and colours
// ---------------------------------------------------------------------------

const SVG_W: f64 = 900.0;
const MARGIN_L: f64 = 58.0;
const MARGIN_R: f64 = 62.0;
const PLOT_W: f64 = SVG_W - MARGIN_L - MARGIN_R;
const PLOT_H: f64 = 220.0;
const MARGIN_B: f64 = 44.0;
const LABEL_ROW_H: f64 = 14.0;
const LABEL_BAND_PAD: f64 = 8.0;
const MAX_LABEL_ROWS: usize = 5;
const MAX_LABEL_CHARS: usize = 44;
const CHAR_W: f64 = 6.1;

const COLOR_WEIGHT: &str = "#475569";
const COLOR_WEIGHT_FILL: &str = "#cbd5e1";
const COLOR_CANARY: &str = "#ea580c";
const COLOR_STABLE: &str = "#2563eb";
const COLOR_GOOD: &str = "#16a34a";
const COLOR_BAD: &str = "#dc2626";
const COLOR_STEP: &str = "#6b7280";
const COLOR_INFO: &str = "#7c3aed";

const CSS: &str = r#"
:root{color-scheme:light;--ok:#15803d;--bad:#b91c1c;--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb}
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:#f4f5f7;color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:980px;margin:0 auto;padding:28px 20px 40px}
h1{font-size:28px;line-height:1.2;margin:0 0 4px}
.sub{color:var(--muted);margin:0 0 14px}
.overview{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:8px}
.overview li{background:#fff;border:1px solid var(--line);border-radius:999px;padding:3px 12px;font-size:14px}
.icon{font-weight:700}
.ok .icon,.outcome.ok{color:var(--ok)}
.bad .icon,.outcome.bad{color:var(--bad)}
.release{background:#fff;border:1px solid var(--line);border-left:5px solid var(--ok);border-radius:10px;padding:18px 20px 20px;margin:18px 0;break-inside:avoid;page-break-inside:avoid}
.release.bad{border-left-color:var(--bad)}
.release h2{font-size:20px;line-height:1.3;margin:0}
.outcome{display:inline-block;margin:8px 0 0;padding:3px 10px;border-radius:6px;font-weight:600}
.outcome.ok{background:#dcfce7}
.outcome.bad{background:#fee2e2}
.meta{color:var(--muted);font-size:13px;margin:6px 0 0}
.legend{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:12.5px;color:#374151;margin:14px 0 2px}
.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:22px;height:0;border-top:3px solid}
.sw.area{height:10px;border-top-width:2px;background:#e2e8f0}
.sw.dash{border-top-width:2px;border-top-style:dashed}
figure{margin:0}
svg.chart{display:block;width:100%;height:auto;max-width:100%}
svg.chart text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
table.figures{border-collapse:collapse;margin-top:10px;font-size:14px;min-width:320px}
.figures th{text-align:left;font-weight:500;color:var(--muted);padding:5px 28px 5px 0;border-bottom:1px solid var(--line)}
.figures td{font-weight:600;padding:5px 0;border-bottom:1px solid var(--line);font-variant-numeric:tabular-nums}
.notes{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:18px 0}
.notes h2{font-size:18px;margin:0 0 6px}
.notes p{margin:8px 0;max-width:75ch}
.empty{color:var(--muted)}
footer{color:var(--muted);font-size:12px;margin-top:24px}
@media print{body{background:#fff;font-size:11pt}.wrap{max-width:none;padding:0}.release,.notes{border-color:#d1d5db}}
"#;

// ---------------------------------------------------------------------------
// Public entry point
// ---------------------------------------------------------------------------

/// Renders the whole report as one self-contained HTML document.
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let title = escape(&report.title);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<div class=\"wrap\">\n\
         <header>\n<h1>{title}</h1>\n"
    );
    if !report.subtitle.is_empty() {
        let _ = writeln!(out, "<p class=\"sub\">{}</p>", escape(&report.subtitle));
    }
    if !report.releases.is_empty() {
        out.push_str("<ul class=\"overview\">\n");
        for r in &report.releases {
            let (class, icon) = status(r.ok);
            let _ = writeln!(
                out,
                "<li class=\"{class}\"><span class=\"icon\">{icon}</span> <b>{}</b> {}</li>",
                escape(if r.version.is_empty() {
                    &r.title
                } else {
                    &r.version
                }),
                escape(&r.outcome)
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</header>\n<main>\n");

    if report.releases.is_empty() {
        out.push_str("<p class=\"empty\">No releases recorded.</p>\n");
    }
    let success_lo = success_scale_lo(&report.releases);
    for (i, r) in report.releases.iter().enumerate() {
        render_release(&mut out, r, i + 1, success_lo);
    }

    let notes: Vec<&String> = report
        .notes
        .iter()
        .filter(|n| !n.trim().is_empty())
        .collect();
    if !notes.is_empty() {
        out.push_str("<section class=\"notes\">\n<h2>What happened</h2>\n");
        for n in notes {
            let _ = writeln!(out, "<p>{}</p>", escape(n));
        }
        out.push_str("</section>\n");
    }
    out.push_str(
        "</main>\n<footer>Generated by Sluice. Self-contained page: no scripts, fonts or images are loaded.</footer>\n\
         </div>\n</body>\n</html>\n",
    );
    out
}

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

fn status(ok: bool) -> (&'static str, &'static str) {
    if ok { ("ok", "✓") } else { ("bad", "✗") }
}

fn render_release(out: &mut String, r: &Release, index: usize, success_lo: f64) {
    let (class, icon) = status(r.ok);
    let tl = Timeline::new(r);
    let _ = write!(
        out,
        "<section class=\"release {class}\" id=\"release-{index}\">\n<header>\n<h2>{}</h2>\n\
         <p class=\"outcome {class}\"><span class=\"icon\">{icon}</span> {}</p>\n",
        escape(&r.title),
        escape(&r.outcome)
    );
    let mut meta: Vec<String> = Vec::new();
    if !r.version.is_empty() {
        meta.push(format!("Version {}", escape(&r.version)));
    }
    if r.started.is_finite() {
        meta.push(format!("started {} into the demo", fmt_secs(r.started)));
    }
    match r.ended.filter(|e| e.is_finite()) {
        Some(e) if r.started.is_finite() => {
            meta.push(format!("lasted {}", fmt_secs((e - r.started).max(0.0))));
        }
        Some(_) => {}
        None => meta.push("still running when the report was written".to_string()),
    }
    if !meta.is_empty() {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", meta.join(" · "));
    }
    out.push_str("</header>\n");
    out.push_str(
        "<div class=\"legend\">\
         <span><i class=\"sw area\" style=\"border-color:#475569\"></i>Canary weight (left axis)</span>\
         <span><i class=\"sw\" style=\"border-color:#ea580c\"></i>Canary success rate (right axis)</span>\
         <span><i class=\"sw\" style=\"border-color:#2563eb\"></i>Stable success rate (right axis)</span>\
         <span><i class=\"sw dash\" style=\"border-color:#6b7280\"></i>Step</span>\
         <span><i class=\"sw dash\" style=\"border-color:#16a34a\"></i>Passed / safe / promoted</span>\
         <span><i class=\"sw dash\" style=\"border-color:#dc2626\"></i>Breach / failed / abort</span>\
         </div>\n",
    );
    out.push_str("<figure>\n");
    render_chart(out, r, &tl, index, success_lo);
    out.push_str("</figure>\n");

    if !r.figures.is_empty() {
        out.push_str("<table class=\"figures\">\n<tbody>\n");
        for (k, v) in &r.figures {
            let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

// ---------------------------------------------------------------------------
// Data preparation
// ---------------------------------------------------------------------------

/// A sample with its time relative to the release start and cleaned values.
#[derive(Debug, Clone, Copy)]
struct Pt {
    t: f64,
    weight: Option<f64>,
    canary: Option<f64>,
    stable: Option<f64>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn clean_rate(v: Option<f64>) -> Option<f64> {
    v.and_then(finite).map(|x| x.clamp(0.0, 1.0))
}

/// Everything about one release's time axis.
struct Timeline {
    /// Demo time that maps to x = 0.
    origin: f64,
    /// Right end of the x axis (seconds since origin), always > 0 and finite.
    x_max: f64,
    /// Tick step on the x axis.
    step: f64,
    points: Vec<Pt>,
}

impl Timeline {
    fn new(r: &Release) -> Self {
        let origin = finite(r.started)
            .or_else(|| {
                r.samples
                    .iter()
                    .filter_map(|s| finite(s.t))
                    .min_by(f64::total_cmp)
            })
            .unwrap_or(0.0);
        let mut points: Vec<Pt> = r
            .samples
            .iter()
            .filter_map(|s| {
                let t = finite(s.t - origin)?;
                (t >= 0.0).then_some(Pt {
                    t,
                    weight: finite(s.canary_weight).map(|w| w.clamp(0.0, 100.0)),
                    canary: clean_rate(s.canary_success),
                    stable: clean_rate(s.stable_success),
                })
            })
            .collect();
        points.sort_by(|a, b| a.t.total_cmp(&b.t));

        let mut end = points.last().map_or(0.0, |p| p.t);
        if let Some(e) = r.ended.and_then(|e| finite(e - origin)) {
            end = end.max(e);
        }
        if end.is_nan() || end <= 0.0 {
            end = r
                .marks
                .iter()
                .filter_map(|m| finite(m.t - origin))
                .fold(0.0, f64::max);
        }
        if !(end > 0.0 && end.is_finite()) {
            end = 10.0;
        }
        let step = nice_step(end / 8.0);
        let ticks = (end / step).ceil().max(1.0);
        let mut x_max = ticks * step;
        if !(x_max.is_finite() && x_max > 0.0) {
            x_max = end;
        }
        Timeline {
            origin,
            x_max,
            step,
            points,
        }
    }

    /// x coordinate for a time relative to the origin (clamped to the plot).
    fn x(&self, rel: f64) -> f64 {
        let f = (rel / self.x_max).clamp(0.0, 1.0);
        MARGIN_L + if f.is_finite() { f } else { 0.0 } * PLOT_W
    }
}

/// A 1-2-5 "nice" step at least `raw` (or 1 when `raw` is unusable).
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    if !(mag.is_finite() && mag > 0.0) {
        return raw;
    }
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Lower bound of the success-rate axis, shared by all charts of a report.
fn success_scale_lo(releases: &[Release]) -> f64 {
    let min = releases
        .iter()
        .flat_map(|r| r.samples.iter())
        .flat_map(|s| [s.canary_success, s.stable_success])
        .filter_map(clean_rate)
        .fold(f64::INFINITY, f64::min);
    if min >= 0.8 {
        0.8
    } else if min >= 0.6 {
        0.6
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------
// Chart
// ---------------------------------------------------------------------------

struct Placed<'a> {
    x: f64,
    row: usize,
    anchor_end: bool,
    text: String,
    mark: &'a Mark,
    rel: f64,
}

fn mark_style(kind: &MarkKind) -> (&'static str, &'static str, &'static str) {
    // (colour, dash pattern, human name)
    match kind {
        MarkKind::Step => (COLOR_STEP, "4 3", "Step"),
        MarkKind::AnalysisPassed => (COLOR_GOOD, "5 3", "Analysis passed"),
        MarkKind::AnalysisFailed => (COLOR_BAD, "5 3", "Analysis failed"),
        MarkKind::Breach => (COLOR_BAD, "5 3", "Breach"),
        MarkKind::Abort => (COLOR_BAD, "5 3", "Abort"),
        MarkKind::Safe => (COLOR_GOOD, "5 3", "Safe"),
        MarkKind::Promoted => (COLOR_GOOD, "5 3", "Promoted"),
        MarkKind::Info => (COLOR_INFO, "2 3", "Info"),
    }
}

fn truncate_label(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= MAX_LABEL_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_LABEL_CHARS - 1).collect();
        t.push('…');
        t
    }
}

/// Puts mark labels in rows above the plot so they do not overlap.
fn place_marks<'a>(tl: &Timeline, marks: &'a [Mark]) -> (Vec<Placed<'a>>, usize) {
    let mut items: Vec<(f64, f64, &Mark)> = marks
        .iter()
        .filter_map(|m| {
            let rel = finite(m.t - tl.origin)?;
            Some((tl.x(rel), rel.clamp(0.0, tl.x_max), m))
        })
        .collect();
    items.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut row_ends: Vec<f64> = Vec::new();
    let mut placed = Vec::with_capacity(items.len());
    for (x, rel, m) in items {
        let (_, _, name) = mark_style(&m.kind);
        let text = if m.label.trim().is_empty() {
            name.to_string()
        } else {
            truncate_label(&m.label)
        };
        let w = text.chars().count() as f64 * CHAR_W;
        let anchor_end = x + 3.0 + w > SVG_W - 4.0;
        let (start, end) = if anchor_end {
            (x - 3.0 - w, x - 3.0)
        } else {
            (x + 3.0, x + 3.0 + w)
        };
        let row = match row_ends.iter().position(|&e| start > e + 6.0) {
            Some(r) => r,
            None if row_ends.len() < MAX_LABEL_ROWS => {
                row_ends.push(f64::NEG_INFINITY);
                row_ends.len() - 1
            }
            None => row_ends
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i),
        };
        if let Some(e) = row_ends.get_mut(row) {
            *e = e.max(end);
        }
        placed.push(Placed {
            x,
            row,
            anchor_end,
            text,
            mark: m,
            rel,
        });
    }
    let rows = row_ends.len();
    (placed, rows)
}

/// Formats an SVG coordinate.
fn n(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "0".to_string()
    }
}

fn fmt_secs(v: f64) -> String {
    format!("{v:.1} s")
}

fn fmt_pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn render_chart(out: &mut String, r: &Release, tl: &Timeline, index: usize, lo: f64) {
    let (placed, rows) = place_marks(tl, &r.marks);
    let top = LABEL_BAND_PAD + rows as f64 * LABEL_ROW_H + 6.0;
    let bottom = top + PLOT_H;
    let height = bottom + MARGIN_B;
    let right = MARGIN_L + PLOT_W;
    let y_weight = |w: f64| bottom - (w / 100.0).clamp(0.0, 1.0) * PLOT_H;
    let y_rate = |s: f64| {
        let span = 1.0 - lo;
        let f = if span > 0.0 { (s - lo) / span } else { 1.0 };
        bottom - f.clamp(0.0, 1.0) * PLOT_H
    };

    let _ = write!(
        out,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" \
         role=\"img\" aria-labelledby=\"chart-title-{index}\" font-size=\"11\" \
         font-family=\"system-ui, -apple-system, &#39;Segoe UI&#39;, Roboto, Arial, sans-serif\">\n\
         <title id=\"chart-title-{index}\">Timeline of {}: canary weight and success rates</title>\n",
        n(SVG_W),
        n(height),
        escape(&r.title)
    );
    // Plot background.
    let _ = writeln!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fafbfc\"/>",
        n(MARGIN_L),
        n(top),
        n(PLOT_W),
        n(PLOT_H)
    );

    // Horizontal grid with both y axes (4 intervals on each).
    out.push_str("<g class=\"y-axes\" fill=\"#4b5563\">\n");
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let y = bottom - f * PLOT_H;
        let _ = writeln!(
            out,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e5e7eb\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}%</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"start\">{:.0}%</text>",
            n(MARGIN_L),
            n(right),
            n(MARGIN_L - 6.0),
            n(y + 4.0),
            f * 100.0,
            n(right + 6.0),
            n(y + 4.0),
            (lo + f * (1.0 - lo)) * 100.0,
            y = n(y)
        );
    }
    let mid = top + PLOT_H / 2.0;
    let _ = writeln!(
        out,
        "<text transform=\"translate(14 {m}) rotate(-90)\" text-anchor=\"middle\" fill=\"{COLOR_WEIGHT}\">canary weight</text>\
         <text transform=\"translate({} {m}) rotate(90)\" text-anchor=\"middle\" fill=\"#374151\">success rate</text>",
        n(SVG_W - 12.0),
        m = n(mid)
    );
    out.push_str("</g>\n");

    // X axis ticks.
    out.push_str("<g class=\"x-axis\" fill=\"#4b5563\">\n");
    let decimals = if tl.step >= 1.0 {
        0
    } else {
        ((-tl.step.log10()).ceil().clamp(0.0, 6.0)) as usize
    };
    let mut k = 0u32;
    loop {
        let t = f64::from(k) * tl.step;
        if t > tl.x_max + tl.step * 1e-6 || k > 60 {
            break;
        }
        let x = tl.x(t);
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\" stroke=\"#f0f1f3\"/>\
             <line x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\" stroke=\"#9ca3af\"/>\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{t:.decimals$} s</text>",
            n(top),
            n(bottom),
            n(bottom),
            n(bottom + 5.0),
            n(bottom + 18.0),
            x = n(x)
        );
        k += 1;
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#6b7280\">seconds since the release started</text>",
        n(MARGIN_L + PLOT_W / 2.0),
        n(bottom + 36.0)
    );
    out.push_str("</g>\n");

    // Canary weight: step line over a filled area.
    let wpts: Vec<(f64, f64)> = tl
        .points
        .iter()
        .filter_map(|p| p.weight.map(|w| (tl.x(p.t), y_weight(w))))
        .collect();
    match wpts.as_slice() {
        [] => {}
        [(x, y)] => {
            let _ = writeln!(
                out,
                "<circle class=\"series series-weight\" cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{COLOR_WEIGHT}\"/>",
                n(*x),
                n(*y)
            );
        }
        [(x0, y0), rest @ ..] => {
            let mut line = format!("M{} {}", n(*x0), n(*y0));
            let mut prev_y = *y0;
            let mut last_x = *x0;
            for (x, y) in rest {
                let _ = write!(line, " L{} {} L{} {}", n(*x), n(prev_y), n(*x), n(*y));
                prev_y = *y;
                last_x = *x;
            }
            let area = format!(
                "M{} {} L{} L{} {} Z",
                n(*x0),
                n(bottom),
                line.strip_prefix('M').unwrap_or(&line),
                n(last_x),
                n(bottom)
            );
            let _ = writeln!(
                out,
                "<path class=\"area-weight\" d=\"{area}\" fill=\"{COLOR_WEIGHT_FILL}\" fill-opacity=\"0.55\" stroke=\"none\"/>\n\
                 <path class=\"series series-weight\" d=\"{line}\" fill=\"none\" stroke=\"{COLOR_WEIGHT}\" stroke-width=\"2\" stroke-linejoin=\"round\"/>"
            );
        }
    }

    // Success rates: stable first so the canary line is on top.
    let stable: Vec<Option<(f64, f64)>> = tl
        .points
        .iter()
        .map(|p| p.stable.map(|s| (tl.x(p.t), y_rate(s))))
        .collect();
    let canary: Vec<Option<(f64, f64)>> = tl
        .points
        .iter()
        .map(|p| p.canary.map(|s| (tl.x(p.t), y_rate(s))))
        .collect();
    rate_series(out, "series-stable", COLOR_STABLE, 2.0, &stable);
    rate_series(out, "series-canary", COLOR_CANARY, 2.2, &canary);

    if tl.points.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#9ca3af\">No samples recorded</text>",
            n(MARGIN_L + PLOT_W / 2.0),
            n(mid)
        );
    } else if tl
        .points
        .iter()
        .all(|p| p.canary.is_none() && p.stable.is_none())
    {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#9ca3af\">no success-rate data</text>",
            n(right - 6.0),
            n(top + 14.0)
        );
    }

    // Invisible hover strips with the values of each sample.
    if !tl.points.is_empty() {
        out.push_str("<g class=\"hover\" fill=\"#000\" fill-opacity=\"0\">\n");
        let xs: Vec<f64> = tl.points.iter().map(|p| tl.x(p.t)).collect();
        for (i, p) in tl.points.iter().enumerate() {
            let x = xs.get(i).copied().unwrap_or(MARGIN_L);
            let left = i
                .checked_sub(1)
                .and_then(|j| xs.get(j))
                .map_or(MARGIN_L.max(x - 4.0), |px| (px + x) / 2.0);
            let rgt = xs
                .get(i + 1)
                .map_or(right.min(x + 4.0), |nx| (x + nx) / 2.0);
            let w = (rgt - left).max(0.5);
            let fmt_opt = |v: Option<f64>| v.map_or("no data".to_string(), fmt_pct);
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>t = {}\ncanary weight: {}\ncanary success: {}\nstable success: {}</title></rect>",
                n(left),
                n(top),
                n(w),
                n(PLOT_H),
                fmt_secs(p.t),
                p.weight
                    .map_or("no data".to_string(), |w| format!("{w:.0}%")),
                fmt_opt(p.canary),
                fmt_opt(p.stable)
            );
        }
        out.push_str("</g>\n");
    }

    // Marks: dashed lines with labels stacked above the plot.
    if !placed.is_empty() {
        out.push_str("<g class=\"marks\">\n");
        for p in &placed {
            let (color, dash, name) = mark_style(&p.mark.kind);
            let baseline = LABEL_BAND_PAD + p.row as f64 * LABEL_ROW_H + 10.0;
            let (tx, anchor) = if p.anchor_end {
                (p.x - 3.0, "end")
            } else {
                (p.x + 3.0, "start")
            };
            let _ = writeln!(
                out,
                "<g class=\"mark\"><title>{} · {}: {}</title>\
                 <line x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"{color}\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\" font-weight=\"600\">{}</text></g>",
                fmt_secs(p.rel),
                name,
                escape(p.mark.label.trim()),
                n(baseline - 9.0),
                n(bottom),
                n(tx),
                n(baseline),
                escape(&p.text),
                x = n(p.x)
            );
        }
        out.push_str("</g>\n");
    }

    // Plot frame.
    let _ = writeln!(
        out,
        "<path d=\"M{l} {t} V{b} H{r} V{t}\" fill=\"none\" stroke=\"#9ca3af\"/>",
        l = n(MARGIN_L),
        t = n(top),
        b = n(bottom),
        r = n(right)
    );
    out.push_str("</svg>\n");
}

/// Draws one success-rate series: a path with a sub-path per run of data,
/// and dots for isolated points (a one-point run would be invisible).
fn rate_series(out: &mut String, class: &str, color: &str, width: f64, pts: &[Option<(f64, f64)>]) {
    let mut d = String::new();
    let mut dots: Vec<(f64, f64)> = Vec::new();
    for run in pts.split(|p| p.is_none()) {
        let run: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
        match run.as_slice() {
            [] => {}
            [one] => dots.push(*one),
            [first, rest @ ..] => {
                if !d.is_empty() {
                    d.push(' ');
                }
                let _ = write!(d, "M{} {}", n(first.0), n(first.1));
                for (x, y) in rest {
                    let _ = write!(d, " L{} {}", n(*x), n(*y));
                }
            }
        }
    }
    if !d.is_empty() {
        let _ = writeln!(
            out,
            "<path class=\"series {class}\" d=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/>"
        );
    }
    for (x, y) in dots {
        let _ = writeln!(
            out,
            "<circle class=\"series {class}\" cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{color}\"/>",
            n(x),
            n(y)
        );
    }
}

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const SVG_NS: &str = "http://www.w3.org/2000/svg";

    /// Deterministic jitter in [-1, 1].
    fn jitter(i: usize, seed: f64) -> f64 {
        let x = ((i as f64) * 12.9898 + seed * 78.233).sin() * 43_758.545;
        (x - x.floor()) * 2.0 - 1.0
    }

    fn mark(t: f64, kind: MarkKind, label: &str) -> Mark {
        Mark {
            t,
            kind,
            label: label.to_string(),
        }
    }

    /// Realistic demo data: v2 promoted through 10/30/60 %, v3 aborted at 10 %.
    fn demo_report() -> Report {
        let o2 = 5.0;
        let v2_samples = (0..=28)
            .map(|i| {
                let rel = i as f64 * 2.0;
                let weight = match rel {
                    r if r < 12.0 => 10.0,
                    r if r < 24.0 => 30.0,
                    r if r < 36.0 => 60.0,
                    r if r < 48.0 => 100.0,
                    _ => 0.0,
                };
                Sample {
                    t: o2 + rel,
                    canary_weight: weight,
                    canary_success: (4.0..50.0)
                        .contains(&rel)
                        .then(|| 0.994 + 0.005 * jitter(i, 1.0)),
                    stable_success: Some(0.997 + 0.002 * jitter(i, 2.0)),
                }
            })
            .collect();
        let v2 = Release {
            title: "v2 (good): promoted".into(),
            version: "v2".into(),
            started: o2,
            ended: Some(o2 + 48.0),
            outcome: "Promoted in 48 s".into(),
            ok: true,
            samples: v2_samples,
            marks: vec![
                mark(o2, MarkKind::Step, "weight 10%"),
                mark(o2 + 12.0, MarkKind::AnalysisPassed, "checks passed"),
                mark(o2 + 12.0, MarkKind::Step, "weight 30%"),
                mark(o2 + 24.0, MarkKind::AnalysisPassed, "checks passed"),
                mark(o2 + 24.0, MarkKind::Step, "weight 60%"),
                mark(o2 + 36.0, MarkKind::AnalysisPassed, "checks passed"),
                mark(o2 + 36.0, MarkKind::Info, "promoting: v2 → stable"),
                mark(o2 + 48.0, MarkKind::Promoted, "promoted"),
            ],
            figures: vec![
                ("Steps".into(), "10% → 30% → 60% → 100%".into()),
                ("Analysis runs".into(), "3 passed, 0 failed".into()),
                ("Lowest canary success rate".into(), "98.9%".into()),
                ("Time to promote".into(), "48.0 s".into()),
            ],
        };

        let o3 = 62.0;
        let v3_samples = (0..=20)
            .map(|i| {
                let rel = i as f64;
                Sample {
                    t: o3 + rel,
                    canary_weight: if rel < 10.2 { 10.0 } else { 0.0 },
                    canary_success: (2.0..11.0)
                        .contains(&rel)
                        .then(|| 0.80 + 0.012 * jitter(i, 3.0)),
                    stable_success: Some(0.997 + 0.002 * jitter(i, 4.0)),
                }
            })
            .collect();
        let v3 = Release {
            title: "v3 (bad, 20% errors): rolled back".into(),
            version: "v3".into(),
            started: o3,
            ended: Some(o3 + 16.4),
            outcome: "Rolled back: metric success-rate failed with 0.79 (< 0.95)".into(),
            ok: true,
            samples: v3_samples,
            marks: vec![
                mark(o3, MarkKind::Step, "weight 10%"),
                mark(o3 + 8.5, MarkKind::Breach, "success-rate 0.79 < 0.95"),
                mark(o3 + 10.0, MarkKind::AnalysisFailed, "analysis failed"),
                mark(o3 + 10.2, MarkKind::Abort, "abort: traffic back to v2"),
                mark(o3 + 16.4, MarkKind::Safe, "safe: 100% on v2"),
            ],
            figures: vec![
                ("Peak canary weight".into(), "10%".into()),
                (
                    "Time to detect (first bad data → breach)".into(),
                    "6.5 s".into(),
                ),
                ("Time to safe (abort → 100% stable)".into(), "6.2 s".into()),
                ("Failed canary requests".into(), "≈ 37".into()),
            ],
        };

        Report {
            title: "Sluice demo".into(),
            subtitle: "Canary 10% → 30% → 60% · kind cluster \"sluice-demo\" · 2025-06-01".into(),
            releases: vec![v2, v3],
            notes: vec![
                "v2 was healthy: at each step Prometheus analysis compared the canary's success rate with the threshold (≥ 95%), passed, and Sluice moved more traffic until v2 was promoted.".into(),
                "v3 returned errors for about 20% of requests. Within seconds of the first data the success rate breached the threshold; the analysis failed, Sluice aborted and sent all traffic back to v2. Only 10% of users saw v3, for about 10 seconds.".into(),
            ],
        }
    }

    fn release_with(samples: Vec<Sample>, marks: Vec<Mark>) -> Release {
        Release {
            title: "r".into(),
            version: "v".into(),
            started: 0.0,
            ended: None,
            outcome: "o".into(),
            ok: false,
            samples,
            marks,
            figures: vec![],
        }
    }

    fn report_of(releases: Vec<Release>) -> Report {
        Report {
            title: "t".into(),
            subtitle: String::new(),
            releases,
            notes: vec![],
        }
    }

    fn sample(t: f64, w: f64, c: Option<f64>, s: Option<f64>) -> Sample {
        Sample {
            t,
            canary_weight: w,
            canary_success: c,
            stable_success: s,
        }
    }

    /// Returns (width, height) from each `<svg ... viewBox="0 0 W H"`.
    fn viewboxes(html: &str) -> Vec<(f64, f64)> {
        html.split("viewBox=\"")
            .skip(1)
            .filter_map(|rest| {
                let v: Vec<f64> = rest
                    .split('"')
                    .next()?
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                Some((*v.get(2)?, *v.get(3)?))
            })
            .collect()
    }

    /// Attribute value following `key="` in an element string.
    fn attr<'a>(elem: &'a str, key: &str) -> Option<&'a str> {
        let pat = format!(" {key}=\"");
        let start = elem.find(&pat)? + pat.len();
        elem.get(start..)?.split('"').next()
    }

    /// All elements (opening tags) of the given series class in one svg.
    fn series_elems<'a>(svg: &'a str, class: &str) -> Vec<&'a str> {
        svg.split('<')
            .filter(|e| e.contains(&format!("class=\"series {class}\"")))
            .collect()
    }

    fn numbers(d: &str) -> Vec<f64> {
        d.split(|c: char| c.is_ascii_alphabetic() || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("bad number in path {d:?}: {e}"))
    }

    fn svgs(html: &str) -> Vec<&str> {
        html.split("<svg ")
            .skip(1)
            .map(|s| s.split("</svg>").next().unwrap_or(""))
            .collect()
    }

    #[test]
    fn single_self_contained_document() {
        let html = render(&demo_report());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert_eq!(html.matches("<html").count(), 1);
        assert_eq!(html.matches("<body").count(), 1);
        assert_eq!(html.matches("<style>").count(), 1);
        assert_eq!(html.matches(SVG_NS).count(), 2);
        let stripped = html.replace(SVG_NS, "");
        assert!(!stripped.contains("http://"), "external http reference");
        assert!(!stripped.contains("https://"), "external https reference");
        for bad in [
            "<script", "<link", "<img", "@import", "url(", " src=", "//fonts",
        ] {
            assert!(!stripped.contains(bad), "found {bad}");
        }
    }

    #[test]
    fn escapes_all_text() {
        let mut r = demo_report();
        r.title = "<script>alert(1)</script> & co".into();
        r.subtitle = "a \"quoted\" 'single'".into();
        r.notes.push("<b>note</b> & more".into());
        if let Some(rel) = r.releases.first_mut() {
            rel.title = "<script>x</script>&".into();
            rel.outcome = "<i>o</i>".into();
            rel.figures.push(("<k>".into(), "<v>&".into()));
            rel.marks.push(mark(7.0, MarkKind::Info, "<mark>&'\""));
        }
        let html = render(&r);
        assert!(!html.contains("<script"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;&amp;"));
        assert!(html.contains("a &quot;quoted&quot; &#39;single&#39;"));
        assert!(html.contains("&lt;b&gt;note&lt;/b&gt; &amp; more"));
        assert!(html.contains("&lt;i&gt;o&lt;/i&gt;"));
        assert!(html.contains("<th>&lt;k&gt;</th><td>&lt;v&gt;&amp;</td>"));
        assert!(html.contains("&lt;mark&gt;&amp;&#39;&quot;"));
        assert!(!html.contains("<mark>") && !html.contains("<b>note"));
    }

    #[test]
    fn escape_function() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
        assert_eq!(escape("plain ✓"), "plain ✓");
    }

    #[test]
    fn one_svg_per_release() {
        let r = demo_report();
        assert_eq!(render(&r).matches("<svg").count(), 2);
        let one = report_of(vec![release_with(vec![], vec![])]);
        assert_eq!(render(&one).matches("<svg").count(), 1);
        let none = report_of(vec![]);
        let html = render(&none);
        assert_eq!(html.matches("<svg").count(), 0);
        assert!(html.contains("No releases recorded"));
    }

    #[test]
    fn series_points_inside_viewbox() {
        let html = render(&demo_report());
        let boxes = viewboxes(&html);
        let charts = svgs(&html);
        assert_eq!(boxes.len(), 2);
        assert_eq!(charts.len(), 2);
        for ((w, h), svg) in boxes.iter().zip(&charts) {
            assert!((*w - 900.0).abs() < 1e-9);
            assert!(*h > 250.0 && *h < 360.0, "height {h}");
            for class in ["series-weight", "series-canary", "series-stable"] {
                let elems = series_elems(svg, class);
                let paths: Vec<&str> = elems
                    .iter()
                    .filter(|e| e.starts_with("path"))
                    .copied()
                    .collect();
                assert_eq!(paths.len(), 1, "{class}: one path");
                for p in paths {
                    let d = attr(p, "d").unwrap_or("");
                    let nums = numbers(d);
                    assert!(
                        nums.len() >= 4 && nums.len().is_multiple_of(2),
                        "{class}: {d}"
                    );
                    for xy in nums.chunks(2) {
                        if let [x, y] = xy {
                            assert!((0.0..=*w).contains(x), "{class}: x {x}");
                            assert!((0.0..=*h).contains(y), "{class}: y {y}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn gaps_split_success_lines() {
        let samples = vec![
            sample(0.0, 10.0, Some(0.99), Some(0.99)),
            sample(1.0, 10.0, Some(0.98), Some(0.99)),
            sample(2.0, 10.0, None, Some(0.99)),
            sample(3.0, 10.0, Some(0.97), Some(0.99)),
            sample(4.0, 10.0, Some(0.96), Some(0.99)),
            sample(5.0, 10.0, None, Some(0.99)),
            sample(6.0, 10.0, Some(0.95), Some(0.99)),
        ];
        let html = render(&report_of(vec![release_with(samples, vec![])]));
        let svg = svgs(&html).first().copied().unwrap_or("");
        let canary = series_elems(svg, "series-canary");
        let path = canary
            .iter()
            .find(|e| e.starts_with("path"))
            .copied()
            .unwrap_or("");
        assert_eq!(attr(path, "d").unwrap_or("").matches('M').count(), 2);
        // The last, isolated point is a dot.
        assert_eq!(canary.iter().filter(|e| e.starts_with("circle")).count(), 1);
        let stable = series_elems(svg, "series-stable");
        assert_eq!(stable.len(), 1);
    }

    #[test]
    fn empty_samples_do_not_panic() {
        let mut r = release_with(vec![], vec![mark(3.0, MarkKind::Abort, "abort-here")]);
        r.ended = None;
        let html = render(&report_of(vec![r]));
        assert!(html.contains("No samples recorded"));
        assert!(html.contains("abort-here"));
        assert!(html.contains("still running"));
        assert!(!html.contains("NaN") && !html.contains("inf"));
    }

    #[test]
    fn one_sample() {
        let r = release_with(vec![sample(0.0, 10.0, Some(0.9), None)], vec![]);
        let html = render(&report_of(vec![r]));
        let svg = svgs(&html).first().copied().unwrap_or("");
        assert_eq!(series_elems(svg, "series-weight").len(), 1);
        assert_eq!(series_elems(svg, "series-canary").len(), 1);
        assert!(!html.contains("NaN"));
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let samples = vec![
            sample(f64::NAN, 10.0, Some(0.99), Some(0.99)),
            sample(0.0, f64::NAN, Some(f64::NAN), Some(f64::INFINITY)),
            sample(1.0, f64::INFINITY, Some(0.99), Some(0.99)),
            sample(2.0, 30.0, Some(0.98), Some(f64::NEG_INFINITY)),
            sample(f64::INFINITY, 30.0, Some(0.98), Some(0.99)),
            sample(3.0, 30.0, Some(0.97), Some(0.99)),
        ];
        let marks = vec![
            mark(f64::NAN, MarkKind::Breach, "nan-mark"),
            mark(2.0, MarkKind::Breach, "ok-mark"),
        ];
        let mut r = release_with(samples, marks);
        r.ended = Some(f64::NAN);
        let mut r2 = r.clone();
        r2.started = f64::NAN;
        let html = render(&report_of(vec![r, r2]));
        assert!(!html.contains("NaN"));
        assert!(!html.to_lowercase().contains("inf"));
        assert!(html.contains("ok-mark"));
        let boxes = viewboxes(&html);
        for ((w, h), svg) in boxes.iter().zip(svgs(&html)) {
            for class in ["series-weight", "series-canary", "series-stable"] {
                for e in series_elems(svg, class) {
                    let coords: Vec<f64> = match attr(e, "d") {
                        Some(d) => numbers(d),
                        None => ["cx", "cy"]
                            .iter()
                            .filter_map(|k| attr(e, k)?.parse().ok())
                            .collect(),
                    };
                    for xy in coords.chunks(2) {
                        if let [x, y] = xy {
                            assert!(x.is_finite() && (0.0..=*w).contains(x));
                            assert!(y.is_finite() && (0.0..=*h).contains(y));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn marks_outside_range_are_clamped_and_labelled() {
        let samples = (0..10)
            .map(|i| sample(100.0 + i as f64, 10.0, Some(0.99), Some(0.99)))
            .collect();
        let marks = vec![
            mark(-500.0, MarkKind::Step, "way-before"),
            mark(1e9, MarkKind::Promoted, "way-after"),
            mark(104.0, MarkKind::AnalysisFailed, "inside"),
            mark(104.0, MarkKind::Abort, ""),
        ];
        let mut r = release_with(samples, marks);
        r.started = 100.0;
        r.ended = Some(109.0);
        let html = render(&report_of(vec![r]));
        for label in ["way-before", "way-after", "inside", "Abort"] {
            assert!(html.contains(label), "missing label {label}");
        }
        let svg = svgs(&html).first().copied().unwrap_or("");
        let xs: Vec<f64> = svg
            .split("<g class=\"mark\">")
            .skip(1)
            .filter_map(|g| {
                let line = g.split("<line").nth(1)?;
                attr(line, "x1")?.parse().ok()
            })
            .collect();
        assert_eq!(xs.len(), 4);
        for x in &xs {
            assert!((MARGIN_L..=MARGIN_L + PLOT_W).contains(x), "x {x}");
        }
        // Mark colours follow their kind.
        assert!(svg.contains(COLOR_BAD) && svg.contains(COLOR_GOOD) && svg.contains(COLOR_STEP));
    }

    #[test]
    fn demo_mark_labels_appear() {
        let html = render(&demo_report());
        for label in [
            "weight 10%",
            "weight 30%",
            "weight 60%",
            "checks passed",
            "promoted",
            "success-rate 0.79 &lt; 0.95",
            "abort: traffic back to v2",
            "safe: 100% on v2",
        ] {
            assert!(html.contains(label), "missing {label}");
        }
    }

    #[test]
    fn outcome_colour_follows_ok() {
        let mut bad = release_with(vec![], vec![]);
        bad.outcome = "went wrong".into();
        let mut good = bad.clone();
        good.ok = true;
        good.outcome = "went right".into();
        let html = render(&report_of(vec![bad, good]));
        assert!(
            html.contains("<p class=\"outcome bad\"><span class=\"icon\">✗</span> went wrong</p>")
        );
        assert!(
            html.contains("<p class=\"outcome ok\"><span class=\"icon\">✓</span> went right</p>")
        );
    }

    #[test]
    fn figures_and_notes_rendered() {
        let html = render(&demo_report());
        assert!(html.contains("<th>Time to safe (abort → 100% stable)</th><td>6.2 s</td>"));
        assert!(html.contains("What happened"));
        assert_eq!(html.matches("<table class=\"figures\">").count(), 2);
        let plain = render(&report_of(vec![release_with(vec![], vec![])]));
        assert!(!plain.contains("<table") && !plain.contains("What happened"));
    }

    #[test]
    fn success_scale_rule() {
        let rel = |c: f64| release_with(vec![sample(0.0, 0.0, Some(c), Some(0.999))], vec![]);
        assert_eq!(success_scale_lo(&[]), 0.8);
        assert_eq!(success_scale_lo(&[rel(0.95)]), 0.8);
        assert_eq!(success_scale_lo(&[rel(0.8)]), 0.8);
        assert_eq!(success_scale_lo(&[rel(0.95), rel(0.79)]), 0.6);
        assert_eq!(success_scale_lo(&[rel(0.3)]), 0.0);
        assert_eq!(success_scale_lo(&[rel(f64::NAN)]), 0.8);
        // Shared scale: right-axis labels of both demo charts are 60..100 %.
        let html = render(&demo_report());
        assert_eq!(html.matches("text-anchor=\"start\">60%</text>").count(), 2);
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(6.0), 10.0);
        assert_eq!(nice_step(1.5), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(0.03), 0.05);
        assert_eq!(nice_step(f64::NAN), 1.0);
        assert_eq!(nice_step(0.0), 1.0);
        let t = Timeline::new(&release_with(
            vec![sample(0.0, 0.0, None, None), sample(52.0, 0.0, None, None)],
            vec![],
        ));
        assert_eq!((t.step, t.x_max), (10.0, 60.0));
    }

    #[test]
    fn huge_and_tiny_ranges() {
        for end in [1e-9, 1e300] {
            let r = release_with(
                vec![
                    sample(0.0, 50.0, Some(0.9), Some(0.9)),
                    sample(end, 60.0, Some(0.95), None),
                ],
                vec![mark(end / 2.0, MarkKind::Info, "mid")],
            );
            let html = render(&report_of(vec![r]));
            assert!(!html.contains("NaN") && html.contains("mid"));
        }
    }

    /// Writes the demo page when `SLUICE_REPORT_EXAMPLE` names a file, e.g.
    /// `SLUICE_REPORT_EXAMPLE=example.html cargo test`.
    #[test]
    fn example_page() {
        let html = render(&demo_report());
        assert!(html.len() > 5_000);
        if let Some(path) = std::env::var_os("SLUICE_REPORT_EXAMPLE") {
            assert!(
                std::fs::write(&path, &html).is_ok(),
                "cannot write {path:?}"
            );
        }
    }
}
