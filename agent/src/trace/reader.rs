//! Streaming, validating reader of a trace: bounded lines, a checked first line, and
//! every later line parsed on its own so that one bad line costs one warning.
//!
//! Memory is bounded by [`MAX_LINE`] whatever the input: the file is never read whole,
//! and a line longer than that is skipped (counted, not stored).
use std::io::{self, BufRead};

use serde::Deserialize;
use thiserror::Error;

use super::schema::{
    CowEvent, End, FORMAT_NAME, FORMAT_VERSION, IoEvent, Meta, ProcessRecord, Record, Sample,
    SessionEnd, SessionStart,
};

/// The longest line read. Real lines are under 40 KiB (a `session_end` with a 4096-bucket
/// timeline and its files); anything longer is not a cowtrace line.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("cannot open trace {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot read trace {path} at line {line}: {source}")]
    Read {
        path: String,
        line: u64,
        source: io::Error,
    },
    #[error("{path} is empty: not a cowtrace trace (record one with `cowtrace record -o FILE`)")]
    Empty { path: String },
    #[error("{path}: line {line}: not a cowtrace trace: {reason}")]
    NotATrace {
        path: String,
        line: u64,
        reason: String,
    },
    #[error(
        "{path}: line {line}: trace format version {version} is newer than this cowtrace reads \
         (version {FORMAT_VERSION}): use a newer cowtrace"
    )]
    UnsupportedVersion {
        path: String,
        line: u64,
        version: u64,
    },
}

/// One line of input, without its newline.
#[derive(Debug, PartialEq, Eq)]
pub enum RawLine<'a> {
    /// `terminated` is false for a last line that has no newline (a cut trace).
    Text {
        no: u64,
        bytes: &'a [u8],
        terminated: bool,
    },
    /// Longer than the limit: skipped, only its length is known.
    TooLong { no: u64, len: u64, terminated: bool },
}

/// Lines of at most `max` bytes from a `BufRead`, never holding more than that.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    line_no: u64,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            line_no: 0,
            max,
        }
    }

    /// The number of the last line returned (1-based).
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    pub fn next_line(&mut self) -> io::Result<Option<RawLine<'_>>> {
        self.buf.clear();
        let mut len: u64 = 0;
        let mut too_long = false;
        let mut terminated = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            let (chunk, found) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (&avail[..i], true),
                None => (avail, false),
            };
            len = len.saturating_add(chunk.len() as u64);
            if !too_long {
                if self.buf.len() + chunk.len() > self.max {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            let used = chunk.len() + usize::from(found);
            self.inner.consume(used);
            if found {
                terminated = true;
                break;
            }
        }
        if len == 0 && !terminated {
            return Ok(None);
        }
        self.line_no += 1;
        let no = self.line_no;
        Ok(Some(if too_long {
            RawLine::TooLong {
                no,
                len,
                terminated,
            }
        } else {
            RawLine::Text {
                no,
                bytes: &self.buf,
                terminated,
            }
        }))
    }
}

/// Why a line after the first could not be used (a warning, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// Not JSON, or a JSON line without a string `type`.
    NotJson(String),
    /// The last line, cut before its end: the trace was truncated mid-write.
    Incomplete,
    /// Valid JSON, but a known line type with a missing or mistyped field.
    Invalid {
        kind: String,
        reason: String,
    },
    TooLong {
        len: u64,
    },
}

impl std::fmt::Display for LineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineProblem::NotJson(e) => write!(f, "not a valid JSON line ({e}); skipped"),
            LineProblem::Incomplete => write!(
                f,
                "incomplete: the trace was cut in the middle of this line; skipped"
            ),
            LineProblem::Invalid { kind, reason } => {
                write!(f, "invalid `{kind}` line ({reason}); skipped")
            }
            LineProblem::TooLong { len } => {
                write!(
                    f,
                    "{len} bytes long, over the {} MiB line limit; skipped",
                    MAX_LINE >> 20
                )
            }
        }
    }
}

/// What the reader yields after the first line. Not boxed: a bad line is rare, and
/// every good one would pay an allocation.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Item {
    Line { no: u64, line: Record },
    Bad { no: u64, problem: LineProblem },
}

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
}

/// The `type` of a line. Lines written by cowtrace start with `{"type":"NAME"`; that is
/// read without parsing, and any other spelling (reformatted by a tool) is parsed.
fn line_type(bytes: &[u8]) -> Result<String, LineProblem> {
    const PREFIX: &[u8] = b"{\"type\":\"";
    if let Some(rest) = bytes.strip_prefix(PREFIX)
        && let Some(end) = rest.iter().position(|&b| b == b'"' || b == b'\\')
        && rest[end] == b'"'
        && let Ok(s) = std::str::from_utf8(&rest[..end])
    {
        return Ok(s.to_string());
    }
    match serde_json::from_slice::<TypeOnly>(bytes) {
        Ok(t) => Ok(t.kind.into_owned()),
        Err(e) if e.is_data() => {
            // Valid JSON without a string `type`.
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => Err(LineProblem::NotJson(
                    "a JSON line without a string `type` field".into(),
                )),
                Err(e) => Err(LineProblem::NotJson(json_error(&e))),
            }
        }
        Err(e) => Err(LineProblem::NotJson(json_error(&e))),
    }
}

/// serde_json's message without its "at line 1 column N" (the input is one line; the
/// caller names the line in the file).
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match msg.strip_suffix(&suffix) {
        Some(m) if e.column() > 0 => format!("{m} at column {}", e.column()),
        Some(m) => m.to_string(),
        None => msg,
    }
}

fn typed<'a, T: Deserialize<'a>>(kind: &str, bytes: &'a [u8]) -> Result<T, LineProblem> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            LineProblem::Invalid {
                kind: kind.to_string(),
                reason: json_error(&e),
            }
        } else {
            LineProblem::NotJson(json_error(&e))
        }
    })
}

/// Parse one line (not the first). Pure: the unit of the fuzz tests.
pub fn parse_line(bytes: &[u8]) -> Result<Record, LineProblem> {
    let kind = line_type(bytes)?;
    Ok(match kind.as_str() {
        "meta" => Record::Meta(Box::new(typed::<Meta>(&kind, bytes)?)),
        "session_start" => Record::SessionStart(typed::<SessionStart>(&kind, bytes)?),
        "sample" => Record::Sample(typed::<Sample>(&kind, bytes)?),
        "session_end" => Record::SessionEnd(Box::new(typed::<SessionEnd>(&kind, bytes)?)),
        "process" => Record::Process(Box::new(typed::<ProcessRecord>(&kind, bytes)?)),
        "end" => Record::End(typed::<End>(&kind, bytes)?),
        "cow" => Record::Cow(typed::<CowEvent>(&kind, bytes)?),
        "zero_fill" => Record::ZeroFill(typed::<CowEvent>(&kind, bytes)?),
        "write" => Record::Write(typed::<IoEvent>(&kind, bytes)?),
        "fsync" => Record::Fsync(typed::<IoEvent>(&kind, bytes)?),
        "io" => Record::Io(typed::<IoEvent>(&kind, bytes)?),
        _ => {
            // Unknown types are skipped, but only when they are whole JSON lines: a cut
            // line must still be reported as cut.
            typed::<serde::de::IgnoredAny>(&kind, bytes)?;
            Record::Unknown(kind)
        }
    })
}

fn is_blank(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_whitespace)
}

/// What a first line that is not a trace looks like, for the error message.
fn not_a_trace_reason(path: &str, bytes: &[u8]) -> String {
    const EXPECTED: &str = "expected a first line {\"type\":\"meta\",\"format\":\"cowtrace\",...}";
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return format!("it is gzip-compressed: try `zcat {path} | cowtrace report -`");
    }
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return format!("it is zstd-compressed: try `zstdcat {path} | cowtrace report -`");
    }
    if bytes.contains(&0) || std::str::from_utf8(bytes).is_err() {
        return format!("binary data ({EXPECTED})");
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) => format!("not JSON: {} ({EXPECTED})", json_error(&e)),
        Ok(v) => {
            let ty = v.get("type").and_then(|t| t.as_str());
            let fmt = v.get("format").and_then(|t| t.as_str());
            match (ty, fmt) {
                (Some("meta"), Some(f)) => {
                    format!("format is {f:?}, not \"{FORMAT_NAME}\" ({EXPECTED})")
                }
                (Some("meta"), None) => format!("the meta line has no `format` field ({EXPECTED})"),
                (Some(t), _) => format!(
                    "the first line is a `{t}` line ({EXPECTED}); was the start of the trace cut?"
                ),
                (None, _) => format!("a JSON line without a `type` field ({EXPECTED})"),
            }
        }
    }
}

/// A validated trace: its meta line, then [`Item`]s.
pub struct TraceReader<R> {
    lines: LineReader<R>,
    path: String,
    pub meta: Meta,
    /// The line number of the meta line (1 unless blank lines precede it).
    pub meta_line: u64,
}

impl<R: BufRead> TraceReader<R> {
    /// Read and check the first non-blank line. `path` names the input in errors.
    pub fn open(path: &str, input: R) -> Result<Self, ReadError> {
        Self::with_limit(path, input, MAX_LINE)
    }

    pub fn with_limit(path: &str, input: R, max_line: usize) -> Result<Self, ReadError> {
        let mut lines = LineReader::new(input, max_line);
        let read_err = |line: u64, source| ReadError::Read {
            path: path.to_string(),
            line,
            source,
        };
        let not_trace = |line: u64, reason: String| ReadError::NotATrace {
            path: path.to_string(),
            line,
            reason,
        };
        loop {
            let no = lines.line_no() + 1;
            let raw = lines.next_line().map_err(|e| read_err(no, e))?;
            let (no, bytes) = match raw {
                None => {
                    return Err(ReadError::Empty {
                        path: path.to_string(),
                    });
                }
                Some(RawLine::TooLong { no, len, .. }) => {
                    return Err(not_trace(
                        no,
                        format!(
                            "the first line is {len} bytes long, with no end in sight (binary data?)"
                        ),
                    ));
                }
                Some(RawLine::Text { no, bytes, .. }) => (no, bytes),
            };
            if is_blank(bytes) {
                continue;
            }
            let meta = check_meta(bytes).map_err(|e| match e {
                MetaCheck::NotATrace => not_trace(no, not_a_trace_reason(path, bytes)),
                MetaCheck::BadVersion(v) => {
                    not_trace(no, format!("`version` is {v}, not a positive integer"))
                }
                MetaCheck::Newer(version) => ReadError::UnsupportedVersion {
                    path: path.to_string(),
                    line: no,
                    version,
                },
                MetaCheck::Invalid(reason) => not_trace(no, format!("invalid meta line: {reason}")),
            })?;
            return Ok(Self {
                lines,
                path: path.to_string(),
                meta,
                meta_line: no,
            });
        }
    }

    /// The next item, `None` at the end of the input. Only I/O errors are errors.
    pub fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        loop {
            let no = self.lines.line_no() + 1;
            let raw = self.lines.next_line().map_err(|source| ReadError::Read {
                path: self.path.clone(),
                line: no,
                source,
            })?;
            return Ok(match raw {
                None => None,
                Some(RawLine::TooLong { no, len, .. }) => Some(Item::Bad {
                    no,
                    problem: LineProblem::TooLong { len },
                }),
                Some(RawLine::Text { bytes, .. }) if is_blank(bytes) => continue,
                Some(RawLine::Text {
                    no,
                    bytes,
                    terminated,
                }) => Some(match parse_line(bytes) {
                    Ok(line) => Item::Line { no, line },
                    // A cut last line has no newline; a bad line inside the file has one.
                    Err(LineProblem::NotJson(_) | LineProblem::Invalid { .. }) if !terminated => {
                        Item::Bad {
                            no,
                            problem: LineProblem::Incomplete,
                        }
                    }
                    Err(problem) => Item::Bad { no, problem },
                }),
            });
        }
    }
}

enum MetaCheck {
    NotATrace,
    BadVersion(String),
    Newer(u64),
    Invalid(String),
}

fn check_meta(bytes: &[u8]) -> Result<Meta, MetaCheck> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| MetaCheck::NotATrace)?;
    if v.get("type").and_then(|t| t.as_str()) != Some("meta")
        || v.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME)
    {
        return Err(MetaCheck::NotATrace);
    }
    let version = v.get("version").cloned().unwrap_or(serde_json::Value::Null);
    match version.as_u64() {
        Some(0) | None => return Err(MetaCheck::BadVersion(version.to_string())),
        Some(n) if n > u64::from(FORMAT_VERSION) => return Err(MetaCheck::Newer(n)),
        Some(_) => {}
    }
    serde_json::from_value(v).map_err(|e| MetaCheck::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const META: &str = r#"{"type":"meta","format":"cowtrace","version":1,"host":"h","kernel":"k","targets":"auto","pids":[]}"#;

    fn items(input: &[u8]) -> Result<(Meta, Vec<Item>), ReadError> {
        items_with(input, MAX_LINE)
    }

    fn items_with(input: &[u8], max: usize) -> Result<(Meta, Vec<Item>), ReadError> {
        let mut r = TraceReader::with_limit("t.jsonl", input, max)?;
        let mut out = Vec::new();
        while let Some(i) = r.next_item()? {
            out.push(i);
        }
        Ok((r.meta, out))
    }

    fn lines_of(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                RawLine::Text {
                    no,
                    bytes,
                    terminated,
                } => {
                    format!(
                        "{no}:{}{}",
                        String::from_utf8_lossy(bytes),
                        if terminated { "" } else { "$" }
                    )
                }
                RawLine::TooLong {
                    no,
                    len,
                    terminated,
                } => format!("{no}:long {len}{}", if terminated { "" } else { "$" }),
            });
        }
        out
    }

    #[test]
    fn line_reader_bounds_and_numbers_lines() {
        assert_eq!(lines_of(b"ab\n\ncd", 10), ["1:ab", "2:", "3:cd$"]);
        assert_eq!(lines_of(b"0123456789ab\nx\n", 10), ["1:long 12", "2:x"]);
        assert_eq!(lines_of(b"0123456789ab", 10), ["1:long 12$"]);
        assert!(lines_of(b"", 10).is_empty());
        // A small BufReader capacity splits lines across fills.
        let r = io::BufReader::with_capacity(3, &b"abcdefg\nhi\n"[..]);
        let mut lr = LineReader::new(r, 100);
        let mut got = Vec::new();
        while let Some(RawLine::Text { bytes, .. }) = lr.next_line().unwrap() {
            got.push(String::from_utf8_lossy(bytes).into_owned());
        }
        assert_eq!(got, ["abcdefg", "hi"]);
    }

    #[test]
    fn first_line_must_be_cowtrace_meta() {
        let e = items(b"").unwrap_err();
        assert!(matches!(e, ReadError::Empty { .. }), "{e}");
        assert!(items(b"\n\n  \n").is_err_and(|e| matches!(e, ReadError::Empty { .. })));
        let e = items(b"{\"hello\":1}\n").unwrap_err().to_string();
        assert!(
            e.starts_with("t.jsonl: line 1: not a cowtrace trace: a JSON line without a `type`"),
            "{e}"
        );
        let e = items(b"{\"type\":\"meta\",\"format\":\"other\",\"version\":1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("format is \"other\""), "{e}");
        let e = items(b"{\"type\":\"sample\",\"session\":1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a `sample` line") && e.contains("cut?"), "{e}");
        let e = items(b"\x1f\x8b\x08\x00\x00").unwrap_err().to_string();
        assert!(
            e.contains("gzip") && e.contains("`zcat t.jsonl | cowtrace report -`"),
            "{e}"
        );
        let e = items(b"\x00\x01\x02\xff\n").unwrap_err().to_string();
        assert!(e.contains("binary data"), "{e}");
        let e = items(b"hello world\n").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
        let e = items(&[b'x'; 100])
            .map(|_| ())
            .map_or_else(|e| e, |()| panic!());
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = items_with(&[b'x'; 100], 50).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("100 bytes long"), "{e}");
        let e = items(b"\n{\"hello\":1}\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "blank lines count: {e}");
    }

    #[test]
    fn versions() {
        let v2 = META.replace("\"version\":1", "\"version\":2");
        let e = items(v2.as_bytes()).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::UnsupportedVersion {
                    version: 2,
                    line: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("version 2 is newer"), "{e}");
        for bad in ["0", "-1", "\"1\"", "1.5", "null"] {
            let m = META.replace("\"version\":1", &format!("\"version\":{bad}"));
            let e = items(m.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("not a positive integer"), "{bad}: {e}");
        }
        let no_version = META.replace("\"version\":1,", "");
        assert!(
            items(no_version.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("`version` is null")
        );
        let (meta, rest) = items(META.as_bytes()).unwrap();
        assert_eq!((meta.version, meta.host.as_str(), rest.len()), (1, "h", 0));
        // Reformatted (spaces, other key order) and unknown fields are fine.
        let m = r#"{ "version": 1, "future": [1,2], "format": "cowtrace", "type": "meta" }"#;
        assert_eq!(items(m.as_bytes()).unwrap().0.version, 1);
        let e = items(br#"{"type":"meta","format":"cowtrace","version":1,"pids":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid meta line"), "{e}");
    }

    #[test]
    fn later_lines_give_items_and_problems() {
        let input = format!(
            "{META}\n\
             {{\"type\":\"sample\",\"session\":1,\"cow_bytes\":4096,\"new_field\":{{\"x\":1}}}}\n\
             {{\"type\":\"from_the_future\",\"x\":1}}\n\
             {{\"type\":\"session_end\",\"kind\":\"fork\"}}\n\
             garbage\n\
             \n\
             {{\"type\": \"end\", \"sessions\": 1}}\n\
             {{\"type\":\"sample\",\"sess"
        );
        let (_, items) = items(input.as_bytes()).unwrap();
        assert_eq!(items.len(), 6, "{items:#?}");
        assert!(
            matches!(&items[0], Item::Line { no: 2, line: Record::Sample(s) } if s.cow_bytes == 4096)
        );
        assert!(
            matches!(&items[1], Item::Line { no: 3, line: Record::Unknown(t) } if t == "from_the_future")
        );
        assert!(
            matches!(&items[2], Item::Bad { no: 4, problem: LineProblem::Invalid { kind, reason } } if kind == "session_end" && reason.contains("missing field `session`")),
            "{:?}",
            items[2]
        );
        assert!(matches!(
            &items[3],
            Item::Bad {
                no: 5,
                problem: LineProblem::NotJson(_)
            }
        ));
        assert!(matches!(&items[4], Item::Line { no: 7, line: Record::End(e) } if e.sessions == 1));
        assert_eq!(
            items[5],
            Item::Bad {
                no: 8,
                problem: LineProblem::Incomplete
            }
        );
    }

    #[test]
    fn cut_unknown_line_is_incomplete_not_skipped() {
        let input = format!("{META}\n{{\"type\":\"future\",\"x\":[1,2");
        let (_, items) = items(input.as_bytes()).unwrap();
        assert_eq!(
            items,
            [Item::Bad {
                no: 2,
                problem: LineProblem::Incomplete
            }]
        );
    }

    #[test]
    fn problems_read_well() {
        assert_eq!(
            LineProblem::TooLong { len: 2 << 20 }.to_string(),
            "2097152 bytes long, over the 1 MiB line limit; skipped"
        );
        assert!(
            LineProblem::Incomplete
                .to_string()
                .contains("cut in the middle")
        );
    }

    #[test]
    fn line_types() {
        let l = parse_line(br#"{"type":"write","session":3,"ts_ns":1,"pid":2,"bytes":4096,"latency_us":9.5,"dev":1,"ino":2,"fd":3}"#).unwrap();
        assert!(matches!(l, Record::Write(e) if e.session == Some(3) && e.bytes == 4096));
        let l = parse_line(br#"{"type":"cow","session":null,"ts_ns":1,"pid":2,"tid":2,"addr":4096,"order":0,"side":"parent"}"#).unwrap();
        assert!(
            matches!(l, Record::Cow(e) if e.session.is_none() && e.side == crate::trace::schema::Side::Parent)
        );
        assert!(parse_line(br#"{"type":"sample","session":-1}"#).is_err());
        assert!(parse_line(br#"{"type":"sample","session":1,"cow_bytes":1e400}"#).is_err());
        assert!(
            parse_line(br#"{"type":"sa\"mple","session":1}"#).unwrap()
                == Record::Unknown("sa\"mple".into())
        );
        assert!(parse_line(br#"{"type":7}"#).is_err());
        assert!(parse_line(b"[1,2]").is_err());
        assert!(parse_line(b"\"meta\"").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = items_with(&data, 256);
            let mut with_meta = format!("{META}\n").into_bytes();
            with_meta.extend_from_slice(&data);
            let r = items_with(&with_meta, 256);
            prop_assert!(r.is_ok());
        }

        #[test]
        fn json_like_lines_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("{\"type\":\"".to_string()),
                    Just("session_end\",".to_string()),
                    Just("sample\",".to_string()),
                    Just("cow\",".to_string()),
                    Just("\"session\":".to_string()),
                    Just("\"cow\":{".to_string()),
                    Just("\"timeline_pages\":[".to_string()),
                    Just("18446744073709551615".to_string()),
                    Just("-1".to_string()),
                    Just("1.5e308".to_string()),
                    Just("null".to_string()),
                    Just(",".to_string()),
                    Just("}".to_string()),
                    Just("]".to_string()),
                    Just("\n".to_string()),
                    "[a-z_\":,{}\\[\\]0-9]{0,12}",
                ],
                0..40,
            )
        ) {
            let input = format!("{META}\n{}", parts.concat());
            let r = items(input.as_bytes());
            prop_assert!(r.is_ok());
        }
    }
}
