//! The human report: a table of limits (binding rows marked `*`), the
//! ceiling per role, and the notes.

use std::fmt::Write as _;

use super::{Limit, Report, Role, Value};
use crate::units::{group, human_bytes};

/// The whole human report as text.
pub fn render(report: &Report) -> String {
    let mut out = table(&report.limits);
    out.push_str("\nCeiling (* marks the limit that binds first)\n");
    for role in Role::ALL {
        let line = match (report.ceiling.get(role), report.binding.get(role)) {
            (Some(v), Some(name)) => format!("{:>12}  bound by {name}", group(v)),
            _ => format!("{:>12}  (no known limit)", "unknown"),
        };
        let _ = writeln!(out, "  {:<9} {line}", role.name());
    }
    let source = if report.kernel_bytes_caches.is_empty() {
        "default".to_string()
    } else {
        let parts: Vec<String> =
            report.kernel_bytes_caches.iter().map(|c| format!("{} {} ({})", c.name, c.bytes, c.source)).collect();
        parts.join(" + ")
    };
    let _ = writeln!(out, "\nKernel memory per idle socket: {} B ({source})", group(report.kernel_bytes_per_socket));
    out.push_str("\nNotes\n");
    for l in report.limits.iter() {
        if let Some(note) = &l.note {
            let _ = writeln!(out, "  {}: {note}", l.name);
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "  {note}");
    }
    out
}

fn cells(l: &Limit) -> [String; 6] {
    let mark = if l.binds.is_empty() { "" } else { " *" };
    let value = l.value.as_ref().map_or_else(|| "unknown".to_string(), value_text);
    let allow = |role: Role| {
        let v = l.allows.get(role).map_or_else(|| "-".to_string(), group);
        if l.binds.contains(&role) { format!("*{v}") } else { v }
    };
    [
        format!("{}{mark}", l.name),
        value,
        allow(Role::Server),
        allow(Role::Client),
        allow(Role::Loopback),
        l.fix.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// A value as the table shows it: grouped digits, sizes in binary units.
fn value_text(v: &Value) -> String {
    let limit = |v: &Option<u64>| v.map_or_else(|| "unlimited".to_string(), group);
    match v {
        Value::Number(n) => group(*n),
        Value::SoftHard { soft, hard } => format!("{} soft / {} hard", limit(soft), limit(hard)),
        Value::Range { low, high } => format!("{low} {high}"),
        Value::Pressure { low, pressure, high } => format!("{low} {pressure} {high}"),
        Value::Buffer { min, default, max } => format!("{min} {default} {max}"),
        Value::Memory(m) => format!("{} total", human_bytes(m.total)),
    }
}

fn table(limits: &[Limit]) -> String {
    let header = ["limit", "value", "server", "client", "loopback", "fix"].map(String::from);
    let rows: Vec<[String; 6]> = std::iter::once(header).chain(limits.iter().map(cells)).collect();
    let mut width = [0usize; 6];
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let fix = wrap(&row[5], FIX_WIDTH);
        for (n, fix_line) in fix.iter().enumerate() {
            let mut line = String::new();
            for (i, cell) in row[..5].iter().enumerate() {
                let cell = if n == 0 { cell.as_str() } else { "" };
                let _ = match i {
                    0 | 1 => write!(line, "{cell:<w$}  ", w = width[i]),
                    _ => write!(line, "{cell:>w$}  ", w = width[i]),
                };
            }
            line.push_str(fix_line);
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// Width at which the fix column wraps onto continuation lines.
const FIX_WIDTH: usize = 60;

/// Splits `text` into lines of at most `width` characters at spaces (a
/// longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let Some(cur) = lines.last_mut() else { break };
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    lines
}
