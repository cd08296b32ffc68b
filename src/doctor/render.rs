//! The human report. By default short: the ceiling per role, each limit
//! that binds with what it means, the fix that raises it and the limit
//! next in line. With `--all`: every limit in a table (binding rows marked
//! `*`), each row's note and fix beneath it, the kernel memory per socket
//! and the notes. Every line fits [`WIDTH`] columns.

use std::fmt::Write as _;

use super::{Limit, Report, Role, Value};
use crate::units::{group, human_bytes};

/// The widest line printed.
pub const WIDTH: usize = 100;

/// The whole human report as text: short, or every row with `all`.
pub fn render(report: &Report, all: bool) -> String {
    let mut out = String::new();
    if all {
        out.push_str(&table(&report.limits));
        out.push('\n');
    }
    out.push_str("Ceiling: idle connections held at once");
    out.push_str(if all { " (* marks the limit that binds)\n" } else { "\n" });
    for role in Role::ALL {
        let line = match (report.ceiling.get(role), report.binding.get(role)) {
            (Some(v), Some(name)) => format!("{:>12}  bound by {name}", group(v)),
            _ => format!("{:>12}  (no known limit)", "unknown"),
        };
        let _ = writeln!(out, "  {:<9} {line}", role.name());
    }
    if all {
        let source = if report.kernel_bytes_caches.is_empty() {
            "default".to_string()
        } else {
            let parts: Vec<String> =
                report.kernel_bytes_caches.iter().map(|c| format!("{} {} ({})", c.name, c.bytes, c.source)).collect();
            parts.join(" + ")
        };
        let text = format!("Kernel memory per idle socket: {} B ({source})", group(report.kernel_bytes_per_socket));
        out.push('\n');
        push_wrapped(&mut out, "", "  ", &text);
        out.push_str("\nNotes\n");
        for note in &report.notes {
            push_wrapped(&mut out, "  ", "    ", note);
        }
        return out;
    }
    out.push_str(&binding_rows(report));
    let wanted = |n: &&String| n.starts_with("unknown, skipped") || n.contains("lacks CAP_SYS_ADMIN");
    for note in report.notes.iter().filter(wanted) {
        push_wrapped(&mut out, "", "  ", note);
    }
    let _ = writeln!(out, "Every limit ({}), its note and fix: tcpmax doctor --all", report.limits.len());
    out
}

/// Each binding row once: its note, its fix, and the limit next in line
/// for the roles it binds (what binds once it is raised).
fn binding_rows(report: &Report) -> String {
    let mut out = String::new();
    out.push('\n');
    for l in report.limits.iter().filter(|l| !l.binds.is_empty()) {
        let roles: Vec<&str> = l.binds.iter().map(|r| r.name()).collect();
        let head = format!("{} binds {}", l.name, roles.join(" and "));
        let text = l.note.as_ref().map_or_else(|| head.clone(), |note| format!("{head}: {note}"));
        // Two lines at most here; the whole note is in --all.
        let mut lines = wrap(&text, WIDTH - 2);
        if lines.len() > NOTE_LINES {
            lines.truncate(NOTE_LINES);
            if let Some(last) = lines.last_mut() {
                while last.chars().count() > WIDTH - 4 {
                    last.pop();
                }
                last.push_str(" …");
            }
        }
        for (i, line) in lines.iter().enumerate() {
            let _ = writeln!(out, "{}{line}", if i == 0 { "" } else { "  " });
        }
        let fix = l.fix.as_deref().unwrap_or("none known that changes anything here");
        push_wrapped(&mut out, "  ", "    ", &format!("fix: {fix}"));
        // The row that binds each role once this one is raised, each row
        // named once with its figure per role.
        let mut next: Vec<String> = Vec::new();
        let mut last_row = "";
        for &role in &l.binds {
            let best = report
                .limits
                .iter()
                .filter(|r| r.name != l.name)
                .filter_map(|r| r.allows.get(role).map(|v| (v, r)))
                .min_by_key(|(v, _)| *v);
            let Some((v, row)) = best else { continue };
            let figure = format!("{}{} ({})", group(v), sharding(row, v), role.name());
            match next.last_mut() {
                Some(prev) if last_row == row.name => prev.push_str(&format!(", {figure}")),
                _ => next.push(format!("{} {figure}", row.name)),
            }
            last_row = &row.name;
        }
        if !next.is_empty() {
            push_wrapped(&mut out, "  ", "    ", &format!("next in line: {}", next.join("; ")));
        }
    }
    out.push('\n');
    out
}

/// The most lines of a binding row's note in the short report.
const NOTE_LINES: usize = 2;

/// For RLIMIT_NOFILE, how its figure is made: descriptors per fd table
/// times the shards (the per-process limit caps one shard only).
fn sharding(l: &Limit, allows: u64) -> String {
    match (&l.value, l.name.as_str()) {
        (Some(Value::SoftHard { hard: Some(h), .. }), "RLIMIT_NOFILE") => {
            let per = h.saturating_sub(super::FD_HEADROOM).max(1);
            format!(" = {} per fd table × {} shards", group(per), group(allows / per))
        }
        _ => String::new(),
    }
}

/// Appends `text` wrapped at [`WIDTH`]: the first line after `first`, the
/// rest after `rest`.
fn push_wrapped(out: &mut String, first: &str, rest: &str, text: &str) {
    let lines = wrap(text, WIDTH - rest.chars().count().max(first.chars().count()));
    for (i, line) in lines.iter().enumerate() {
        let lead = if i == 0 { first } else { rest };
        let _ = writeln!(out, "{lead}{line}");
    }
}

fn cells(l: &Limit) -> [String; 5] {
    let mark = if l.binds.is_empty() { "" } else { " *" };
    let value = match &l.value {
        Some(v) => value_text(v),
        None if l.is_unknown() => "unknown".to_string(),
        None => "none".to_string(),
    };
    let allow = |role: Role| {
        let v = l.allows.get(role).map_or_else(|| "-".to_string(), group);
        if l.binds.contains(&role) { format!("*{v}") } else { v }
    };
    [format!("{}{mark}", l.name), value, allow(Role::Server), allow(Role::Client), allow(Role::Loopback)]
}

/// A value as the table shows it: grouped digits, sizes in binary units,
/// a resource limit as `soft / hard`.
fn value_text(v: &Value) -> String {
    let limit = |v: &Option<u64>| v.map_or_else(|| "unlimited".to_string(), group);
    match v {
        Value::Number(n) => group(*n),
        Value::SoftHard { soft, hard } => format!("{} / {}", limit(soft), limit(hard)),
        Value::Range { low, high } => format!("{low} {high}"),
        Value::Pressure { low, pressure, high } => format!("{low} {pressure} {high}"),
        Value::Buffer { min, default, max } => format!("{min} {default} {max}"),
        Value::Memory(m) => format!("{} total", human_bytes(m.total)),
    }
}

/// Every row: the cells in columns (values that would pass [`WIDTH`] put
/// the counts on a line of their own), then the note and the fix beneath.
fn table(limits: &[Limit]) -> String {
    let header = ["limit", "value (soft / hard)", "server", "client", "loopback"].map(String::from);
    let rows: Vec<[String; 5]> = std::iter::once(header).chain(limits.iter().map(cells)).collect();
    let mut width = [0usize; 5];
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let columns = width.iter().sum::<usize>() + 2 * (width.len() - 1) <= WIDTH;
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        if columns {
            let mut line = format!("{:<a$}  {:<b$}", row[0], row[1], a = width[0], b = width[1]);
            for (cell, w) in row[2..].iter().zip(&width[2..]) {
                let _ = write!(line, "  {cell:>w$}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        } else {
            push_wrapped(&mut out, "", "  ", &format!("{}  {}", row[0], row[1]));
            let counts = format!("{} {}  {} {}  {} {}", rows[0][2], row[2], rows[0][3], row[3], rows[0][4], row[4]);
            push_wrapped(&mut out, "    ", "    ", &counts);
        }
        let Some(l) = i.checked_sub(1).and_then(|i| limits.get(i)) else { continue };
        if let Some(note) = &l.note {
            push_wrapped(&mut out, "    ", "      ", note);
        }
        if let Some(fix) = &l.fix {
            push_wrapped(&mut out, "    ", "      ", &format!("fix: {fix}"));
        }
    }
    out
}

/// Splits `text` into lines of at most `width` characters at spaces; a
/// longer word is cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let mut word = word.to_string();
        while let Some(cur) = lines.last_mut() {
            let (used, len) = (cur.chars().count(), word.chars().count());
            if used == 0 && len > width {
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                cur.push_str(&head);
                lines.push(String::new());
                continue;
            }
            if used > 0 && used + 1 + len > width {
                lines.push(String::new());
                continue;
            }
            if used > 0 {
                cur.push(' ');
            }
            cur.push_str(&word);
            break;
        }
    }
    if lines.len() > 1 && lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}
