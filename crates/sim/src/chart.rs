//! Charts over time as plain SVG (no scripts, no external files): viewers, CDN against peer
//! Mbit/s, offload, stalls and latency behind the live edge, the P2P run against its
//! CDN-only baseline. [`report_svg`] draws them as one picture, [`report_html`] wraps them
//! with the headline figures into a self-contained page.

use std::fmt::Write;

use crate::report::{Point, Report, RunSummary};

const W: f64 = 560.0;
const H: f64 = 240.0;
const ML: f64 = 62.0;
const MR: f64 = 14.0;
const MT: f64 = 30.0;
const MB: f64 = 38.0;

pub struct Line<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" step for about `n` ticks over `span`.
fn step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    let m = if r < 1.5 {
        1.0
    } else if r < 3.0 {
        2.0
    } else if r < 7.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 10.0 || v == v.round() {
        format!("{:.0}", v)
    } else if v.abs() >= 1.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

/// One chart at (`x0`, `y0`) inside a larger SVG.
#[allow(clippy::too_many_arguments)] // a drawing call: position, labels, data and axis bounds
pub fn chart(
    out: &mut String,
    x0: f64,
    y0: f64,
    title: &str,
    y_label: &str,
    lines: &[Line],
    y_min: Option<f64>,
    y_max: Option<f64>,
) {
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (mut x_lo, mut x_hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in xs {
        x_lo = x_lo.min(x);
        x_hi = x_hi.max(x);
    }
    let (mut y_lo, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for y in ys {
        y_lo = y_lo.min(y);
        y_hi = y_hi.max(y);
    }
    if !x_lo.is_finite() {
        x_lo = 0.0;
        x_hi = 1.0;
    }
    if !y_lo.is_finite() {
        y_lo = 0.0;
        y_hi = 1.0;
    }
    y_lo = y_min.unwrap_or(y_lo.min(0.0));
    y_hi = y_max.unwrap_or(y_hi);
    if y_hi <= y_lo {
        y_hi = y_lo + 1.0;
    }
    if x_hi <= x_lo {
        x_hi = x_lo + 1.0;
    }
    let ys_step = step(y_hi - y_lo, 4.0);
    if y_max.is_none() {
        y_hi = (y_hi / ys_step).ceil() * ys_step;
    }
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let px = |x: f64| x0 + ML + (x - x_lo) / (x_hi - x_lo) * pw;
    let py = |y: f64| y0 + MT + ph - (y - y_lo) / (y_hi - y_lo) * ph;
    let _ = write!(
        out,
        r##"<g font-family="DejaVu Sans, Arial, sans-serif" font-size="11"><rect x="{x0}" y="{y0}" width="{W}" height="{H}" fill="#fff"/><text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"##,
        x0 + ML,
        y0 + 18.0,
        esc(title)
    );
    // Grid and y ticks.
    let mut y = (y_lo / ys_step).ceil() * ys_step;
    while y <= y_hi + ys_step * 1e-6 {
        let _ = write!(
            out,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            px(x_lo),
            px(x_hi),
            py(y),
            py(y),
            px(x_lo) - 5.0,
            py(y) + 4.0,
            fmt_tick(y)
        );
        y += ys_step;
    }
    let xs_step = step(x_hi - x_lo, 6.0);
    let mut x = (x_lo / xs_step).ceil() * xs_step;
    while x <= x_hi + xs_step * 1e-6 {
        let _ = write!(
            out,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#bbb"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            px(x),
            px(x),
            py(y_lo),
            py(y_lo) + 4.0,
            px(x),
            py(y_lo) + 16.0,
            fmt_tick(x)
        );
        x += xs_step;
    }
    let _ = write!(
        out,
        r##"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#888"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">simulated time (s)</text><text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" fill="#555">{}</text>"##,
        px(x_lo),
        px(x_hi),
        py(y_lo),
        py(y_lo),
        x0 + ML + pw / 2.0,
        y0 + H - 6.0,
        x0 + 14.0,
        y0 + MT + ph / 2.0,
        esc(y_label)
    );
    for l in lines {
        if l.points.is_empty() {
            continue;
        }
        let mut d = String::new();
        for (i, &(x, y)) in l.points.iter().enumerate() {
            let y = y.clamp(y_lo, y_hi);
            let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, px(x), py(y));
        }
        let _ = write!(
            out,
            r##"<path d="{d}" fill="none" stroke="{}" stroke-width="1.8"{}/>"##,
            l.color,
            if l.dashed { r#" stroke-dasharray="5 3""# } else { "" }
        );
    }
    // Legend, top right.
    let mut lx = x0 + W - MR;
    for l in lines.iter().rev() {
        let w = 26.0 + 6.2 * l.name.chars().count() as f64;
        lx -= w;
        let _ = write!(
            out,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{}/><text x="{:.1}" y="{:.1}">{}</text>"##,
            lx,
            lx + 16.0,
            y0 + 14.0,
            y0 + 14.0,
            l.color,
            if l.dashed { r#" stroke-dasharray="5 3""# } else { "" },
            lx + 19.0,
            y0 + 18.0,
            esc(l.name)
        );
    }
    out.push_str("</g>");
}

fn series(run: &RunSummary, f: impl Fn(&Point) -> Option<f64>) -> Vec<(f64, f64)> {
    run.series.iter().filter_map(|p| f(p).map(|v| (p.t_s, v))).collect()
}

const P2P: &str = "#1f77b4";
const CDN: &str = "#d62728";
const PEER: &str = "#2ca02c";
const BASE: &str = "#7f7f7f";

/// The five charts as one SVG picture.
pub fn report_svg(r: &Report) -> String {
    let p = &r.p2p;
    let b = r.baseline.as_ref();
    let cols = 2.0;
    let rows = 3.0;
    let total_w = W * cols;
    let total_h = H * rows + 40.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}"><rect width="100%" height="100%" fill="#fff"/><text x="16" y="26" font-family="DejaVu Sans, Arial, sans-serif" font-size="16" font-weight="bold">{}</text>"##,
        esc(&format!(
            "shoal sim {} (seed {}): net offload {:.1}% of a {:.1}% bound; rebuffering {:.3}% vs {} CDN-only",
            r.scenario,
            r.seed,
            p.net_offload * 100.0,
            p.bound.bound * 100.0,
            p.qoe.rebuffer_ratio * 100.0,
            b.map_or("-".to_string(), |b| format!("{:.3}%", b.qoe.rebuffer_ratio * 100.0))
        ))
    );
    let top = 40.0;
    let mut viewers =
        vec![Line { name: "viewers", color: P2P, dashed: false, points: series(p, |x| Some(x.viewers)) }];
    viewers.push(Line {
        name: "connections / viewer ×100",
        color: PEER,
        dashed: true,
        points: series(p, |x| Some(x.connections_per_viewer * 100.0)),
    });
    chart(&mut s, 0.0, top, "Viewers", "viewers", &viewers, Some(0.0), None);
    let mut bw = vec![
        Line { name: "CDN (P2P run)", color: CDN, dashed: false, points: series(p, |x| Some(x.cdn_mbps)) },
        Line { name: "peers", color: PEER, dashed: false, points: series(p, |x| Some(x.peer_mbps)) },
    ];
    if let Some(b) = b {
        bw.push(Line {
            name: "CDN (CDN-only)",
            color: BASE,
            dashed: true,
            points: series(b, |x| Some(x.cdn_mbps)),
        });
    }
    chart(&mut s, W, top, "Delivery: CDN vs peers", "Mbit/s", &bw, Some(0.0), None);
    let off = vec![Line {
        name: "offload",
        color: P2P,
        dashed: false,
        points: series(p, |x| x.offload.map(|o| o * 100.0)),
    }];
    let mut off = off;
    off.push(Line {
        name: "bound",
        color: BASE,
        dashed: true,
        points: p.series.iter().map(|x| (x.t_s, p.bound.bound * 100.0)).collect(),
    });
    chart(&mut s, 0.0, top + H, "Offload", "% of bytes from peers", &off, Some(0.0), Some(100.0));
    let mut st =
        vec![Line { name: "P2P", color: P2P, dashed: false, points: series(p, |x| Some(x.stalls as f64)) }];
    if let Some(b) = b {
        st.push(Line {
            name: "CDN-only",
            color: BASE,
            dashed: true,
            points: series(b, |x| Some(x.stalls as f64)),
        });
    }
    chart(&mut s, W, top + H, "Stalls started per interval", "stalls", &st, Some(0.0), None);
    let mut lat = vec![Line {
        name: "P2P",
        color: P2P,
        dashed: false,
        points: series(p, |x| x.behind_live_edge_p50_s),
    }];
    if let Some(b) = b {
        lat.push(Line {
            name: "CDN-only",
            color: BASE,
            dashed: true,
            points: series(b, |x| x.behind_live_edge_p50_s),
        });
    }
    chart(&mut s, 0.0, top + 2.0 * H, "Behind the live edge (median)", "seconds", &lat, Some(0.0), None);
    let mut rb = vec![Line {
        name: "P2P",
        color: P2P,
        dashed: false,
        points: series(p, |x| Some(x.rebuffer_ratio * 100.0)),
    }];
    if let Some(b) = b {
        rb.push(Line {
            name: "CDN-only",
            color: BASE,
            dashed: true,
            points: series(b, |x| Some(x.rebuffer_ratio * 100.0)),
        });
    }
    chart(&mut s, W, top + 2.0 * H, "Rebuffering", "% of viewing time", &rb, Some(0.0), None);
    s.push_str("</svg>\n");
    s
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

fn opt(x: Option<f64>, unit: &str) -> String {
    x.map_or("–".into(), |v| format!("{v:.0} {unit}"))
}

/// A self-contained HTML page: headline figures, P2P against CDN-only, the charts.
pub fn report_html(r: &Report) -> String {
    let p = &r.p2p;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>shoal sim {}</title><style>\
         body{{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222}}\
         table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}.bad{{color:#b00;font-weight:bold}}\
         </style></head><body><h1>shoal sim: {}</h1><p>{}</p>",
        esc(&r.scenario),
        esc(&r.scenario),
        esc(&r.description)
    );
    let _ = write!(
        h,
        "<p>Seed {}, {} simulated seconds, {} viewers (peak {:.0}), renditions {}, mean upload {:.0} kbit/s = {:.2} × mean bitrate.</p>",
        r.seed,
        r.duration_s,
        p.viewers_total,
        p.viewers_peak,
        esc(&r.renditions.iter().map(|(n, b)| format!("{n} {b} kbit/s")).collect::<Vec<_>>().join(", ")),
        r.mean_upload_kbps,
        r.upload_to_bitrate
    );
    h.push_str("<table><tr><th>Delivery</th><th>P2P</th></tr>");
    let rows: Vec<(&str, String)> = vec![
        ("offload (peer ÷ peer + CDN segment bytes)", pct(p.offload)),
        ("net offload (waste counted against it)", pct(p.net_offload)),
        ("CDN savings vs CDN-only", p.cdn_savings.map_or("–".into(), pct)),
        (
            "bound (min of entry and upload bounds)",
            format!("{} (entry {}, upload {})", pct(p.bound.bound), pct(p.bound.entry), pct(p.bound.upload)),
        ),
        ("net offload ÷ bound", format!("{:.3}", p.bound.ratio)),
        (
            "CDN fetches per segment (mean / p50 / p95)",
            format!(
                "{:.2} / {} / {}",
                p.cdn_fetches_per_segment.mean.unwrap_or(0.0),
                opt(p.cdn_fetches_per_segment.p50, ""),
                opt(p.cdn_fetches_per_segment.p95, "")
            ),
        ),
        (
            "CDN bytes",
            format!(
                "{:.1} MB (manifests {:.1} MB)",
                p.bytes.cdn_total as f64 / 1e6,
                p.bytes.cdn_manifests as f64 / 1e6
            ),
        ),
        (
            "peer bytes accepted / arrived",
            format!(
                "{:.1} / {:.1} MB",
                p.bytes.peer_accepted as f64 / 1e6,
                p.bytes.peer_arrived as f64 / 1e6
            ),
        ),
        (
            "upload utilisation (Jain fairness, top 10 % share)",
            format!(
                "{} ({:.2}, {})",
                pct(p.upload.utilisation),
                p.upload.fairness_jain,
                pct(p.upload.top10_share)
            ),
        ),
        (
            "connections per peer (mean / p95)",
            format!(
                "{:.1} / {}",
                p.connections_per_peer.mean.unwrap_or(0.0),
                opt(p.connections_per_peer.p95, "")
            ),
        ),
        (
            "peer messages per second (per viewer)",
            format!("{:.0} ({:.1})", p.messages_per_s, p.messages_per_viewer_s),
        ),
        ("unconnectable pairs", pct(p.unconnectable_pairs)),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
    }
    h.push_str("</table><table><tr><th>Quality of experience</th><th>P2P</th><th>CDN-only</th></tr>");
    let b = r.baseline.as_ref();
    let q = |f: &dyn Fn(&RunSummary) -> String| (f(p), b.map_or("–".into(), f));
    let qrows: Vec<(&str, (String, String))> = vec![
        ("rebuffer ratio", q(&|x| format!("{:.4} %", x.qoe.rebuffer_ratio * 100.0))),
        ("stalls (viewers who stalled)", q(&|x| format!("{} ({})", x.qoe.stalls, x.qoe.viewers_with_stalls))),
        (
            "start-up p50 / p95",
            q(&|x| format!("{} / {}", opt(x.qoe.startup_ms.p50, "ms"), opt(x.qoe.startup_ms.p95, "ms"))),
        ),
        (
            "behind live edge p50 / p95",
            q(&|x| {
                format!(
                    "{} / {}",
                    opt(x.qoe.behind_live_edge_ms.p50, "ms"),
                    opt(x.qoe.behind_live_edge_ms.p95, "ms")
                )
            }),
        ),
        ("start failures", q(&|x| x.qoe.start_failures.to_string())),
        (
            "invariants",
            q(&|x| {
                if x.invariants_ok {
                    "all held".into()
                } else {
                    format!("FAILED: {}", x.invariants.failures.join("; "))
                }
            }),
        ),
        (
            "wall time, speed",
            q(&|x| format!("{:.1} s, {:.1}× real time", x.speed.wall_s, x.speed.sim_s_per_wall_s)),
        ),
        (
            "events/s, peak memory",
            q(&|x| {
                format!(
                    "{:.2} M/s, {}",
                    x.speed.events_per_s / 1e6,
                    x.speed.peak_rss_mib.map_or("–".into(), |m| format!("{m:.0} MiB"))
                )
            }),
        ),
    ];
    for (k, (a, c)) in qrows {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(k), esc(&a), esc(&c));
    }
    h.push_str("</table>");
    h.push_str(&report_svg(r));
    h.push_str("<p>Raw figures: <code>report.json</code> next to this page. How to read this: <code>docs/simulator.md</code>.</p></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(step(100.0, 4.0), 20.0);
        assert_eq!(step(7.0, 4.0), 2.0);
        assert_eq!(step(0.4, 4.0), 0.1);
    }

    #[test]
    fn a_chart_is_well_formed_svg() {
        let mut s = String::from(r#"<svg xmlns="http://www.w3.org/2000/svg">"#);
        chart(
            &mut s,
            0.0,
            0.0,
            "t<1>",
            "y",
            &[Line { name: "a&b", color: "#000", dashed: true, points: vec![(0.0, 1.0), (10.0, 3.0)] }],
            None,
            None,
        );
        s.push_str("</svg>");
        assert!(s.contains("t&lt;1&gt;") && s.contains("a&amp;b") && s.contains("M"));
        assert_eq!(s.matches("<g").count(), s.matches("</g>").count());
    }
}
