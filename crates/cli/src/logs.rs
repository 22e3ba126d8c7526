//! How container output is shown: `name | ` prefixes, in colour on a
//! terminal, aligned, with timestamps on request.

use berth_engine::backend::LogLine;
use std::collections::HashMap;
use std::io::Write;

const COLOURS: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

/// How lines are printed.
#[derive(Default)]
pub struct Printer {
    pub colour: bool,
    pub timestamps: bool,
}

impl Printer {
    /// Print one line; false once stdout is closed (`berth logs | head`).
    pub fn print(&self, seen: &mut Seen, line: &LogLine) -> bool {
        let next = seen.colours.len();
        let i = *seen.colours.entry(line.container.clone()).or_insert(next);
        seen.width = seen.width.max(line.container.len());
        let width = seen.width;
        let name = &line.container;
        let text = &line.text;
        let mut o = std::io::stdout().lock();
        let stamp = match (&line.time, self.timestamps) {
            (Some(t), true) => format!("{t} "),
            _ => String::new(),
        };
        if self.colour {
            writeln!(
                o,
                "\x1b[{}m{name:<width$} | \x1b[0m{stamp}{text}",
                COLOURS[i % COLOURS.len()]
            )
            .is_ok()
        } else {
            writeln!(o, "{name:<width$} | {stamp}{text}").is_ok()
        }
    }
}

/// What a printer remembers between lines: each container's colour and
/// the widest name so far (prefixes line up).
#[derive(Default)]
pub struct Seen {
    colours: HashMap<String, usize>,
    pub width: usize,
}

impl Seen {
    /// Prefixes padded to the longest of `names` from the start.
    pub fn with_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Seen {
        Seen {
            colours: HashMap::new(),
            width: names.into_iter().map(str::len).max().unwrap_or(0),
        }
    }
}
