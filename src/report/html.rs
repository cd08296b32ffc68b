//! The page: one self-contained HTML file (inline CSS and SVG, no scripts,
//! nothing fetched), well-formed XML as well so that tests can parse it.
//! On top the runs with their colours, the summary table and the machine;
//! then the figures.

use std::fmt::Write as _;

use super::figures::{self, Figure};
use super::input::{Kind, Run};
use super::plots::PALETTE;
use crate::units::{group, human_bytes};

const CSS: &str = "\
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif; color: #222; \
background: #f6f6f4; margin: 0; padding: 20px 28px; }
main { max-width: 1480px; margin: 0 auto; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 22px 0 8px; }
h3 { font-size: 16px; margin: 0 0 4px; }
p.runs { margin: 4px 0 0; font-size: 15px; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; vertical-align: -2px; margin: 0 6px 0 14px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef0f3; font-weight: 600; }
td.k { color: #555; white-space: nowrap; }
.tables { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(640px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 12px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 13px; color: #555; margin-top: 4px; }
.note { color: #8a5a00; }
p.absent { font-size: 14px; color: #555; margin: 8px 0 0; }
footer { margin-top: 20px; font-size: 12px; color: #777; }
";

/// Escapes text for HTML and XML; control characters, which XML does not
/// allow, are shown as `\u{..}` escapes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in crate::bounded::printable(s).chars() {
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

fn color(i: usize) -> String {
    let c = PALETTE[i % PALETTE.len()];
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// The whole page.
pub fn page(runs: &[Run], figures: &[Figure]) -> String {
    let mut s = String::new();
    let w = &mut s;
    let names: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    let _ = write!(
        w,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>tcpmax report: {}</title>\n\
         <style>\n{CSS}</style>\n</head>\n<body>\n<main>\n<h1>tcpmax report</h1>\n<p class=\"runs\">",
        esc(&names.join(", "))
    );
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(w, "<span class=\"swatch\" style=\"background: {}\"></span>{}", color(i), esc(&r.label));
    }
    let _ = writeln!(w, "</p>");
    let _ = writeln!(w, "<div class=\"tables\">\n<section>\n<h2>Summary</h2>");
    table(w, runs, &summary_rows(runs));
    let _ = writeln!(w, "</section>\n<section>\n<h2>Machine</h2>");
    table(w, runs, &machine_rows(runs));
    let _ = writeln!(w, "</section>\n</div>\n<h2>Plots</h2>\n<div class=\"figures\">");
    for f in figures {
        let Some(svg) = &f.svg else { continue };
        let _ = write!(w, "<figure id=\"{}\">\n<h3>{}</h3>\n{svg}<figcaption>{}", f.id, esc(f.title), esc(&f.caption));
        for n in &f.notes {
            let _ = write!(w, "<br/><span class=\"note\">{}</span>", esc(n));
        }
        let _ = writeln!(w, "</figcaption>\n</figure>");
    }
    let _ = writeln!(w, "</div>");
    // Nothing to draw: one line each instead of an empty chart.
    for f in figures.iter().filter(|f| f.svg.is_none()) {
        let _ = writeln!(w, "<p class=\"absent\" id=\"{}\"><b>{}:</b> {}</p>", f.id, esc(f.title), esc(&f.caption));
    }
    let _ = writeln!(
        w,
        "<footer>Written by tcpmax {} from {}.</footer>\n</main>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION"),
        esc(&runs.iter().map(|r| r.source.as_str()).collect::<Vec<_>>().join(", "))
    );
    s
}

type Row = (&'static str, Vec<String>);

fn table(w: &mut String, runs: &[Run], rows: &[Row]) {
    let _ = write!(w, "<table>\n<tr><th></th>");
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(
            w,
            "<th><span class=\"swatch\" style=\"background: {}; margin-left: 0\"></span>{}</th>",
            color(i),
            esc(&r.label)
        );
    }
    let _ = writeln!(w, "</tr>");
    for (key, cells) in rows {
        let _ = write!(w, "<tr><td class=\"k\">{}</td>", esc(key));
        for c in cells {
            let _ = write!(w, "<td>{}</td>", esc(c));
        }
        let _ = writeln!(w, "</tr>");
    }
    let _ = writeln!(w, "</table>");
}

const NONE: &str = "\u{2014}";

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| NONE.to_string(), f)
}

fn row(key: &'static str, runs: &[Run], f: impl Fn(&Run) -> String) -> Row {
    (key, runs.iter().map(f).collect())
}

fn summary_rows(runs: &[Run]) -> Vec<Row> {
    let mut rows = vec![
        row("report", runs, |r| {
            let file =
                std::path::Path::new(&r.source).file_name().map_or(r.source.clone(), |f| f.to_string_lossy().into());
            format!("{} (version {}): {file}", r.kind.name(), r.version)
        }),
        row("target", runs, |r| opt(r.target(), group)),
        row("held at the peak", runs, |r| match r.f.predicted {
            Some(c) if c > 0 => {
                format!("{} ({:.1}% of the doctor's ceiling)", group(r.peak()), 100.0 * r.peak() as f64 / c as f64)
            }
            _ => group(r.peak()),
        }),
        row("doctor's ceiling", runs, |r| {
            opt(r.f.predicted, |c| {
                format!("{} (bound by {})", group(c), r.f.predicted_binding.as_deref().unwrap_or("unknown"))
            })
        }),
        row("first limit", runs, first_limit),
        row("ramp", runs, |r| match (r.f.ramp_seconds, r.f.connect_rate_per_s) {
            (Some(s), Some(rate)) => format!("{s:.1} s at {} connections/s", group(rate as u64)),
            (s, _) => opt(s, |s| format!("{s:.1} s")),
        }),
        row("hold", runs, |r| opt(r.f.hold_seconds, |s| format!("{s:.1} s"))),
        row("heartbeat round trip", runs, |r| opt(r.f.ping_rtt_us, |p| p.summary())),
        row("connect latency", runs, |r| opt(r.f.connect_latency_us, |p| p.summary())),
        row("kernel per connection", runs, |r| {
            match (r.f.kernel_slab_bytes_per_connection, r.f.kernel_bytes_per_connection) {
                (Some(slab), Some(free)) => format!("{slab:.0} B slab growth; {free:.0} B fall of free memory"),
                (Some(slab), None) => format!("{slab:.0} B slab growth"),
                _ => NONE.into(),
            }
        }),
        row("doctor's kernel per connection", runs, |r| {
            opt(r.f.predicted_bytes_per_connection, |b| format!("{b:.0} B"))
        }),
        row("user per connection", runs, |r| {
            opt(r.f.user_bytes_per_connection.or(r.f.rss_anon_bytes_per_connection), |b| {
                format!("{b:.1} B anonymous RSS")
            })
        }),
        row("failed connects", runs, |r| opt(r.f.failed, group)),
        row("shards", runs, |r| match r.shards {
            (Some(s), Some(c)) => format!("{s} server, {c} client"),
            (None, Some(c)) => format!("{c} client"),
            _ => NONE.into(),
        }),
        row("interrupted", runs, |r| opt(r.f.interrupted, |i| if i { "yes (Ctrl-C)".into() } else { "no".into() })),
        row("timeline", runs, |r| match (r.f.timeline.len(), r.f.timeline.last()) {
            (n, Some(last)) => format!("{n} samples over {:.0} s", last.t),
            _ => "none".into(),
        }),
    ];
    if runs.iter().any(|r| !r.parts.is_empty()) {
        rows.push(row("agents or backends", runs, |r| r.parts.len().to_string()));
    }
    rows
}

fn first_limit(r: &Run) -> String {
    if let Some(l) = &r.f.first_limit {
        return format!("{} ({}): {}", l.name, l.kind, l.explanation);
    }
    if let Some(why) = &r.f.stopped_by {
        return format!("guard: {why}");
    }
    if matches!((r.kind, r.target()), (Kind::Bench | Kind::Load, Some(t)) if r.peak() >= t) {
        return "none: the target was reached".into();
    }
    // Failures without a named limit: their main cause.
    let failed = r.f.failed.unwrap_or(0);
    match figures::main_cause(r) {
        Some((cause, n)) if failed > 0 => {
            format!("none reported; {} connects failed, mostly {cause} ({})", group(failed), group(n))
        }
        Some((cause, n)) => format!("none reported; failures, mostly {cause} ({})", group(n)),
        None if failed > 0 => format!("none reported; {} connects failed (no cause in the report)", group(failed)),
        None => "none reported".into(),
    }
}

fn machine_rows(runs: &[Run]) -> Vec<Row> {
    let m = |r: &Run| r.f.machine.clone().unwrap_or_default();
    let text = |s: String| if s.is_empty() { NONE.to_string() } else { s };
    vec![
        row("kernel", runs, |r| text(m(r).kernel)),
        row("CPU", runs, |r| text(m(r).cpu_model)),
        row("CPUs", runs, |r| m(r).cpus.to_string()),
        row("memory", runs, |r| human_bytes(m(r).mem_total_bytes)),
        row("RLIMIT_NOFILE", runs, |r| format!("{} soft, {} hard", group(m(r).nofile_soft), group(m(r).nofile_hard))),
        row("local port range", runs, |r| opt(m(r).port_range, |(lo, hi)| format!("{lo}-{hi}"))),
        row("commit", runs, |r| text(m(r).commit)),
        row("date", runs, |r| text(m(r).date)),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_is_escaped() {
        assert_eq!(super::esc("a<b & 'c' \"d\">"), "a&lt;b &amp; &#39;c&#39; &quot;d&quot;&gt;");
        assert_eq!(super::esc("<\u{1b}[2J>"), "&lt;\\u{1b}[2J&gt;");
    }
}
