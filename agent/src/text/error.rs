//! An error and its causes on one line, each said once.
//!
//! Error types often print their cause inside their own message *and* return it as
//! `source()`, so printing the chain naively says it twice ("cannot open X: No such file
//! or directory (os error 2): No such file or directory (os error 2)"). A cause whose
//! text the previous message already contains is left out.

/// `e` and its causes, `: `-separated, each distinct cause once.
pub fn chain(e: &anyhow::Error) -> String {
    join(e.chain().map(ToString::to_string))
}

/// The same for a plain `std::error::Error` and its `source()`s.
pub fn chain_of(e: &dyn std::error::Error) -> String {
    let mut msgs = Vec::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        msgs.push(c.to_string());
        cur = c.source();
    }
    join(msgs.into_iter())
}

fn join(msgs: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    let mut prev: Option<String> = None;
    for m in msgs {
        let m = m.trim().to_string();
        let repeated = m.is_empty() || prev.as_deref().is_some_and(|p| p.contains(&m));
        if !repeated {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&m);
        }
        prev = Some(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io;

    use anyhow::Context as _;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open trace output t.jsonl: {source}; choose a writable path with -o")]
    struct Open {
        source: io::Error,
    }

    fn not_found() -> io::Error {
        io::Error::from(io::ErrorKind::NotFound)
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let e = anyhow::Error::new(Open {
            source: not_found(),
        });
        // anyhow's `{:#}` repeats it.
        assert_eq!(format!("{e:#}").matches("entity not found").count(), 2);
        assert_eq!(
            chain(&e),
            "cannot open trace output t.jsonl: entity not found; choose a writable path with -o"
        );
        assert_eq!(
            chain_of(&Open {
                source: not_found()
            }),
            chain(&e)
        );
    }

    #[test]
    fn distinct_causes_are_all_kept_in_order() {
        let e = Err::<(), _>(not_found())
            .context("reading /proc/1/status")
            .context("resolving -p 1")
            .unwrap_err();
        assert_eq!(
            chain(&e),
            "resolving -p 1: reading /proc/1/status: entity not found"
        );
        let one = anyhow::anyhow!("no process with pid 7");
        assert_eq!(chain(&one), "no process with pid 7");
    }

    #[test]
    fn a_repeat_is_judged_against_the_previous_cause_only() {
        // The same text twice in a row is said once; after a different cause, the
        // earlier text is not a repeat of it.
        let e = Err::<(), _>(anyhow::anyhow!("disk full"))
            .context("disk full")
            .context("writing t.jsonl")
            .unwrap_err();
        assert_eq!(chain(&e), "writing t.jsonl: disk full");
        assert_eq!(
            join(["a: x", "x", "y", "x"].map(String::from).into_iter()),
            "a: x: y: x"
        );
        assert_eq!(join(["a", "", "b"].map(String::from).into_iter()), "a: b");
    }
}
