//! The guest's serial console, as the host reads it: the runner's machine-readable
//! lines among the kernel's messages, and what a run's console says when it went wrong.
//! Pure: unit-tested without a guest.
//!
//! The lines (printed by `guest.rs`, one `write` each):
//! - `VMTEST <name> PASS|FAIL <detail>`: one result (`boot`, or `<mode>/<item>`);
//! - `VMTEST-LOG <name> <text>`: output behind a result (a failed test's tail);
//! - `VMTEST-INFO <mode> <key> <json>`: figures for the table (`attach`, `ratios`);
//! - `VMTEST-END`: the runner finished; the guest powers off next.
//!
//! The firmware's escape sequences may precede a line on the same row, so a line is
//! found by its marker anywhere in the row.

#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Result {
        name: String,
        pass: bool,
        detail: String,
    },
    Log {
        name: String,
        text: String,
    },
    Info {
        mode: String,
        key: String,
        json: String,
    },
    End,
}

pub fn parse(row: &str) -> Option<Line> {
    let at = row.find("VMTEST")?;
    let line = row[at..].trim_end_matches(['\r', '\n']);
    if line == "VMTEST-END" {
        return Some(Line::End);
    }
    if let Some(rest) = line.strip_prefix("VMTEST-LOG ") {
        let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
        return Some(Line::Log {
            name: name.to_string(),
            text: text.to_string(),
        });
    }
    if let Some(rest) = line.strip_prefix("VMTEST-INFO ") {
        let mut it = rest.splitn(3, ' ');
        let (mode, key, json) = (it.next()?, it.next()?, it.next().unwrap_or(""));
        return Some(Line::Info {
            mode: mode.to_string(),
            key: key.to_string(),
            json: json.to_string(),
        });
    }
    let rest = line.strip_prefix("VMTEST ")?;
    let mut it = rest.splitn(3, ' ');
    let name = it.next()?;
    let pass = match it.next()? {
        "PASS" => true,
        "FAIL" => false,
        _ => return None,
    };
    Some(Line::Result {
        name: name.to_string(),
        pass,
        detail: it.next().unwrap_or("").trim().to_string(),
    })
}

/// What in a console says the kernel died or complained: a panic, an Oops, a BUG or a
/// WARNING splat, or a hung task. The first such row, if any.
pub fn kernel_trouble(rows: &[String]) -> Option<&str> {
    // arm64 spells its stack dump `Call trace:`, x86 `Call Trace:`.
    const SIGNS: [&str; 8] = [
        "Kernel panic",
        "Oops:",
        "BUG:",
        "WARNING:",
        "general protection fault",
        "blocked for more than",
        "Call Trace:",
        "Call trace:",
    ];
    rows.iter()
        .find(|r| SIGNS.iter().any(|s| r.contains(s)))
        .map(String::as_str)
}

/// The last `n` rows, for a failure message.
pub fn tail(rows: &[String], n: usize) -> String {
    rows[rows.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_logs_infos_and_the_end() {
        assert_eq!(
            parse("\x1bc\x1b[?7l\x1b[2JVMTEST boot PASS 6.12.118+deb12-amd64 up 2.5s\r"),
            Some(Line::Result {
                name: "boot".into(),
                pass: true,
                detail: "6.12.118+deb12-amd64 up 2.5s".into()
            })
        );
        assert_eq!(
            parse("VMTEST auto/cow-live FAIL"),
            Some(Line::Result {
                name: "auto/cow-live".into(),
                pass: false,
                detail: String::new()
            })
        );
        assert_eq!(
            parse("VMTEST-LOG auto/cow-live thread 'main' panicked at agent/tests/cow.rs:42:5:"),
            Some(Line::Log {
                name: "auto/cow-live".into(),
                text: "thread 'main' panicked at agent/tests/cow.rs:42:5:".into()
            })
        );
        assert_eq!(
            parse("VMTEST-INFO auto attach {\"method\":\"tracepoint\"}"),
            Some(Line::Info {
                mode: "auto".into(),
                key: "attach".into(),
                json: "{\"method\":\"tracepoint\"}".into()
            })
        );
        assert_eq!(parse("VMTEST-END\r"), Some(Line::End));
        // Not ours, or malformed: ignored.
        assert_eq!(parse("[    2.48] reboot: Power down"), None);
        assert_eq!(parse("VMTEST boot MAYBE x"), None);
    }

    #[test]
    fn trouble_is_the_first_alarming_row() {
        let rows: Vec<String> = [
            "[ 1.0] Run /init as init process",
            "[ 9.1] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
            "[ 9.1] RIP: 0010:__alloc_pages_noprof+0x184/0x350",
            "[ 9.2] Kernel panic - not syncing: Fatal exception",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            kernel_trouble(&rows),
            Some("[ 9.1] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI")
        );
        assert_eq!(kernel_trouble(&rows[..1]), None);
        // An arm64 Oops.
        let arm: Vec<String> = [
            "[ 3.0] Unable to handle kernel NULL pointer dereference at virtual address 0",
            "[ 3.0] Internal error: Oops: 0000000096000004 [#1] SMP",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            kernel_trouble(&arm),
            Some("[ 3.0] Internal error: Oops: 0000000096000004 [#1] SMP")
        );
        assert_eq!(tail(&rows, 2), rows[2..].join("\n"));
        assert_eq!(tail(&rows, 10), rows.join("\n"));
    }
}
