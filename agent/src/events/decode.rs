//! Ring-buffer bytes to typed events: pure, checked, never panics.
use agent_common::{
    CowEvent, EV_COW, EV_DAEMON, EV_DISK, EV_EXEC, EV_EXIT, EV_FDATASYNC, EV_FORK, EV_FORK_RET,
    EV_FSYNC, EV_OOM, EV_RENAME, EV_RESYNC, EV_SETSID, EV_SYNC_FILE_RANGE, EV_TITLE, EV_WRITE,
    IoEvent, ProcEvent, RenameEvent,
};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{what}: expected at least {expected} bytes, got {got}")]
    BadLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what}: unknown event kind {kind}")]
    UnknownKind { what: &'static str, kind: u32 },
}

/// A session-ring event, checked.
#[derive(Clone, Copy, Debug)]
pub enum ProcMsg {
    Fork(ProcEvent),
    ForkRet(ProcEvent),
    Exit(ProcEvent),
    Exec(ProcEvent),
    Title(ProcEvent),
    /// The OOM killer chose this traced process.
    Oom(ProcEvent),
    /// A session child called `setsid()` (it is daemonizing, not saving).
    Setsid(ProcEvent),
    /// A session child outlived its parent after `setsid()`: it is the server now.
    Daemon(ProcEvent),
    /// A server's socket write that says whether a fork serves a replica.
    Resync(ProcEvent),
    Rename(RenameEvent),
}

impl ProcMsg {
    /// The process event, for every kind but a rename.
    pub fn event(&self) -> Option<&ProcEvent> {
        match self {
            ProcMsg::Fork(e)
            | ProcMsg::ForkRet(e)
            | ProcMsg::Exit(e)
            | ProcMsg::Exec(e)
            | ProcMsg::Title(e)
            | ProcMsg::Oom(e)
            | ProcMsg::Setsid(e)
            | ProcMsg::Daemon(e)
            | ProcMsg::Resync(e) => Some(e),
            ProcMsg::Rename(_) => None,
        }
    }

    pub fn ts_ns(&self) -> u64 {
        match self {
            ProcMsg::Rename(e) => e.ts_ns,
            // Every other kind carries a process event.
            _ => self.event().map_or(0, |e| e.ts_ns),
        }
    }
}

impl HotMsg {
    pub fn ts_ns(&self) -> u64 {
        match self {
            HotMsg::Cow(e) => e.ts_ns,
            HotMsg::Io(e) => e.ts_ns,
        }
    }
}

/// A hot-ring event, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotMsg {
    Cow(CowEvent),
    Io(IoEvent),
}

/// The `kind` field every record starts with.
fn kind_of(bytes: &[u8], what: &'static str) -> Result<u32, DecodeError> {
    let k: [u8; 4] =
        bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::BadLength {
                what,
                expected: 4,
                got: bytes.len(),
            })?;
    Ok(u32::from_ne_bytes(k))
}

/// Read a `T` from the front of `bytes` after checking the length. `T` must be a
/// plain-old-data wire type from `agent-common` (every bit pattern valid).
fn read_pod<T: aya::Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let expected = std::mem::size_of::<T>();
    if bytes.len() < expected {
        return Err(DecodeError::BadLength {
            what,
            expected,
            got: bytes.len(),
        });
    }
    // SAFETY: length checked above; `T: Pod` so any bytes are a valid `T`;
    // `read_unaligned` because ring-buffer records are only 8-byte aligned.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode_proc(bytes: &[u8]) -> Result<ProcMsg, DecodeError> {
    const WHAT: &str = "session event";
    if kind_of(bytes, WHAT)? == EV_RENAME {
        return Ok(ProcMsg::Rename(read_pod(bytes, "rename event")?));
    }
    let mut ev: ProcEvent = read_pod(bytes, WHAT)?;
    // The kernel's counters leave the 4 KiB copies out of `copy_bytes`.
    ev.cow_proc = ev.cow_proc.with_4k_bytes();
    ev.cow_parent = ev.cow_parent.with_4k_bytes();
    ev.cow_child = ev.cow_child.with_4k_bytes();
    Ok(match ev.kind {
        EV_FORK => ProcMsg::Fork(ev),
        EV_FORK_RET => ProcMsg::ForkRet(ev),
        EV_EXIT => ProcMsg::Exit(ev),
        EV_EXEC => ProcMsg::Exec(ev),
        EV_TITLE => ProcMsg::Title(ev),
        EV_OOM => ProcMsg::Oom(ev),
        EV_SETSID => ProcMsg::Setsid(ev),
        EV_DAEMON => ProcMsg::Daemon(ev),
        EV_RESYNC => ProcMsg::Resync(ev),
        kind => return Err(DecodeError::UnknownKind { what: WHAT, kind }),
    })
}

pub fn decode_cow(bytes: &[u8]) -> Result<CowEvent, DecodeError> {
    const WHAT: &str = "cow event";
    let ev: CowEvent = read_pod(bytes, WHAT)?;
    if ev.kind != EV_COW {
        return Err(DecodeError::UnknownKind {
            what: WHAT,
            kind: ev.kind,
        });
    }
    Ok(ev)
}

pub fn decode_hot(bytes: &[u8]) -> Result<HotMsg, DecodeError> {
    const WHAT: &str = "hot event";
    match kind_of(bytes, WHAT)? {
        EV_COW => decode_cow(bytes).map(HotMsg::Cow),
        EV_WRITE | EV_FSYNC | EV_FDATASYNC | EV_SYNC_FILE_RANGE | EV_DISK => {
            Ok(HotMsg::Io(read_pod(bytes, "io event")?))
        }
        kind => Err(DecodeError::UnknownKind { what: WHAT, kind }),
    }
}

/// Bytes of a wire value, as the kernel writes them (for tests and fixtures).
pub fn to_bytes<T: aya::Pod>(v: &T) -> Vec<u8> {
    // SAFETY: `T: Pod` has no padding bytes of undefined value (padding is explicit).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::CowCounters;

    fn proc_event(kind: u32) -> ProcEvent {
        ProcEvent {
            kind,
            pid: 42,
            ppid: 7,
            tid: 7,
            ts_ns: 123,
            value: 456,
            comm: *b"redis-server\0\0\0\0",
            title: [0; 64],
            cow_proc: CowCounters {
                wp_faults: 3,
                copies_4k: 2,
                ..Default::default()
            },
            cow_parent: CowCounters::default(),
            cow_child: CowCounters {
                copy_bytes: 8192,
                ..Default::default()
            },
            io: Default::default(),
        }
    }

    #[test]
    fn proc_round_trip() {
        for kind in [
            EV_FORK,
            EV_FORK_RET,
            EV_EXIT,
            EV_EXEC,
            EV_TITLE,
            EV_OOM,
            EV_SETSID,
            EV_DAEMON,
            EV_RESYNC,
        ] {
            let bytes = to_bytes(&proc_event(kind));
            let msg = decode_proc(&bytes).unwrap();
            let ev = match msg {
                ProcMsg::Fork(e)
                | ProcMsg::ForkRet(e)
                | ProcMsg::Exit(e)
                | ProcMsg::Exec(e)
                | ProcMsg::Title(e)
                | ProcMsg::Oom(e)
                | ProcMsg::Setsid(e)
                | ProcMsg::Daemon(e)
                | ProcMsg::Resync(e) => e,
                ProcMsg::Rename(_) => panic!("not a rename"),
            };
            assert_eq!(
                (ev.kind, ev.pid, ev.ppid, ev.ts_ns, ev.value),
                (kind, 42, 7, 123, 456)
            );
            assert_eq!(ev.cow_proc.copies_4k, 2);
            // Decoding adds the 4 KiB copies' bytes, which the kernel leaves out.
            assert_eq!(ev.cow_proc.copy_bytes, 2 * 4096);
            assert_eq!(ev.cow_child.copy_bytes, 8192);
        }
    }

    #[test]
    fn cow_round_trip() {
        let ev = CowEvent {
            kind: EV_COW,
            pid: 1,
            tid: 2,
            order: 9,
            ts_ns: 5,
            addr: 0x7f00,
            session: 3,
            flags: 1,
        };
        assert_eq!(decode_cow(&to_bytes(&ev)).unwrap(), ev);
    }

    #[test]
    fn short_input_is_an_error() {
        let bytes = to_bytes(&proc_event(EV_FORK));
        for len in [0, 1, 8, bytes.len() - 1] {
            assert!(matches!(
                decode_proc(&bytes[..len]),
                Err(DecodeError::BadLength { .. })
            ));
        }
        assert_eq!(
            decode_cow(&[0u8; 39]),
            Err(DecodeError::BadLength {
                what: "cow event",
                expected: 40,
                got: 39
            })
        );
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let bytes = to_bytes(&proc_event(99));
        assert!(matches!(
            decode_proc(&bytes),
            Err(DecodeError::UnknownKind { kind: 99, .. })
        ));
        let mut cow = to_bytes(&CowEvent {
            kind: EV_FORK,
            ..Default::default()
        });
        assert!(decode_cow(&cow).is_err());
        cow[0] = EV_COW as u8;
        assert!(decode_cow(&cow).is_ok());
    }

    #[test]
    fn longer_input_is_accepted() {
        // The kernel may round records up; extra trailing bytes are ignored.
        let mut bytes = to_bytes(&proc_event(EV_EXIT));
        bytes.extend_from_slice(&[0xAA; 8]);
        assert!(matches!(decode_proc(&bytes), Ok(ProcMsg::Exit(_))));
    }

    #[test]
    fn hot_ring_carries_cow_and_io() {
        let io = IoEvent {
            kind: EV_WRITE,
            pid: 1,
            tid: 1,
            session: 2,
            ts_ns: 3,
            latency_ns: 4,
            bytes: 5,
            ino: 6,
            dev: 7,
            fd: 8,
        };
        assert_eq!(decode_hot(&to_bytes(&io)), Ok(HotMsg::Io(io)));
        for kind in [EV_FSYNC, EV_FDATASYNC, EV_SYNC_FILE_RANGE, EV_DISK] {
            let e = IoEvent { kind, ..io };
            assert_eq!(decode_hot(&to_bytes(&e)), Ok(HotMsg::Io(e)));
        }
        let cow = CowEvent {
            kind: EV_COW,
            ..Default::default()
        };
        assert_eq!(decode_hot(&to_bytes(&cow)), Ok(HotMsg::Cow(cow)));
        assert!(matches!(
            decode_hot(&to_bytes(&io)[..55]),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            decode_hot(&[1, 2]),
            Err(DecodeError::BadLength { expected: 4, .. })
        ));
        let bad = IoEvent { kind: 77, ..io };
        assert!(matches!(
            decode_hot(&to_bytes(&bad)),
            Err(DecodeError::UnknownKind { kind: 77, .. })
        ));
    }

    #[test]
    fn rename_on_the_session_ring() {
        let mut r = RenameEvent {
            kind: EV_RENAME,
            pid: 1,
            session: 1,
            tid: 1,
            ts_ns: 2,
            old: [0; 64],
            new: [0; 64],
        };
        r.old[..3].copy_from_slice(b"a.t");
        let bytes = to_bytes(&r);
        assert!(matches!(decode_proc(&bytes), Ok(ProcMsg::Rename(e)) if e.old[..3] == *b"a.t"));
        assert!(matches!(
            decode_proc(&bytes[..100]),
            Err(DecodeError::BadLength {
                what: "rename event",
                ..
            })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A tiny deterministic generator; no dependency needed for this.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_proc(&bytes);
            let _ = decode_cow(&bytes);
            let _ = decode_hot(&bytes);
        }
    }
}
