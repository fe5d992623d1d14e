//! `cowtrace report`: retell a recorded trace offline (no root, no BPF).
//!
//! `trace::reader` turns bytes into validated lines (bounded memory, warnings for bad
//! lines, errors only for input that is not a trace); `fold` folds the lines into
//! sessions and totals (`session` is one session's state, `timeline` keeps each session's samples bounded); `render` writes
//! the text, `json` the `report --json` object and `html` the `report --html` page.
pub mod compare;
pub mod fold;
pub mod html;
pub mod json;
pub mod render;
pub mod session;
pub mod timeline;

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    path::Path,
};

pub use fold::{Flow, Report};

use crate::trace::{ReadError, TraceReader};

/// Read a whole trace from `input`; `source` names it in messages.
pub fn read<R: BufRead>(source: &str, input: R) -> Result<Report, ReadError> {
    let mut reader = TraceReader::open(source, input)?;
    let mut report = Report::new(source, reader.meta.clone(), reader.meta_line);
    loop {
        match reader.next_item() {
            Ok(Some(item)) => {
                if report.add(item) == Flow::Stop {
                    break;
                }
            }
            Ok(None) => break,
            // After a valid first line, a read error cuts the trace short: report what was
            // read, like any truncated trace.
            Err(ReadError::Read { line, source, .. }) => {
                report.read_failed(line, source.to_string());
                break;
            }
            Err(e) => return Err(e),
        }
    }
    report.finish();
    Ok(report)
}

/// Read the trace at `path` (`-` is standard input).
pub fn read_path(path: &Path) -> Result<Report, ReadError> {
    let name = path.display().to_string();
    if path == Path::new("-") {
        let stdin = io::stdin();
        return read("<stdin>", stdin.lock());
    }
    let f = File::open(path).map_err(|source| ReadError::Open {
        path: name.clone(),
        source,
    })?;
    read(&name, BufReader::with_capacity(256 * 1024, f))
}

/// How `report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Html,
}

/// The report as text, one JSON object (with a final newline) or an HTML page.
pub fn render(report: &Report, format: Format) -> String {
    let mut out = Vec::new();
    // Writing to a Vec fails only if serialization does, which our types cannot.
    let _ = write(report, format, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Write the report to `out`. JSON is streamed (a trace of many sessions gives a large
/// object); text and HTML are built first (bounded: the fold keeps detail for a few
/// sessions only).
pub fn write(report: &Report, format: Format, out: &mut impl io::Write) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &report.json()).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
        }
        Format::Text => out.write_all(render::text(report).as_bytes())?,
        Format::Html => out.write_all(html::page(report).as_bytes())?,
    }
    out.flush()
}

/// Write the comparison of two reports to `out`.
pub fn write_comparison(
    a: &Report,
    b: &Report,
    format: Format,
    out: &mut impl io::Write,
) -> io::Result<()> {
    let c = compare::compare(a, b);
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &c).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
        }
        Format::Text => out.write_all(render::printable(&compare::text(&c)).as_bytes())?,
        Format::Html => out.write_all(html::compare_page(&c).as_bytes())?,
    }
    out.flush()
}
