//! The live view drawn into ratatui's `TestBackend` from fixed models: no root, no BPF.
use std::time::Instant;

use cowtrace::{
    events::hist::Hist,
    live::{
        screen::{
            model::{HistView, Losses, ProcRow, SessionHists, SessionRow, ViewModel},
            render::render,
            ui::{Action, UiState},
        },
        store::Rates,
    },
    text::{diagnosis::HostFacts, units::Unit},
};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend};

/// Draw `vm` on a `w`x`h` screen and return its text, one line per row.
fn draw(vm: &ViewModel, ui: &UiState, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(f, vm, ui)).unwrap();
    screen_text(t.backend().buffer())
}

fn screen_text(buf: &ratatui::buffer::Buffer) -> String {
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn hist(name: &'static str, unit: Unit, values: &[(u64, u64)]) -> HistView {
    let mut h = Hist::new();
    for &(v, n) in values {
        for _ in 0..n {
            h.record(v);
        }
    }
    HistView::of(name, unit, &h)
}

fn busy_hists() -> SessionHists {
    SessionHists {
        write_lat: hist(
            "write latency",
            Unit::Micros,
            &[(6, 300), (12, 1800), (25, 400), (70, 6), (3000, 1)],
        ),
        write_size: hist("write size", Unit::Bytes, &[(4096, 2700), (100, 2)]),
        sync_lat: hist(
            "fsync+fdatasync latency",
            Unit::Micros,
            &[(800, 9), (7000, 1)],
        ),
        disk_lat: hist(
            "block I/O latency",
            Unit::Micros,
            &[(40, 20), (1300, 34), (3000, 1)],
        ),
        cow_per_interval: hist(
            "COW pages/interval",
            Unit::Pages,
            &[(11_000, 1), (900, 1), (3, 2), (0, 3)],
        ),
    }
}

fn empty_hists() -> SessionHists {
    SessionHists::of(&Default::default(), None)
}

fn session(id: u64, active: bool) -> SessionRow {
    SessionRow {
        id,
        kind: if id.is_multiple_of(2) {
            "aof-rewrite".into()
        } else {
            "rdb-bgsave".into()
        },
        instance: "127.0.0.1:6379".into(),
        parent_pid: 4242,
        child_pid: 5000 + id as u32,
        active,
        status: if active {
            "running".into()
        } else {
            "exit 0".into()
        },
        elapsed_ms: 12_000,
        cow_bytes: 126_353_408, // 120.5 MiB
        cow_estimate: None,
        pct_of_rss: Some(35.2),
        rss_at_fork: Some(358 << 20),
        // Averages over the run.
        rates: Rates {
            cow: 10.0 * 1048576.0,
            write: 6.7 * 1048576.0,
            disk: 6.3 * 1048576.0,
        },
        // The last interval, while it runs.
        now: active.then_some(Rates {
            cow: 12.1 * 1048576.0,
            write: 38.2 * 1048576.0,
            disk: 36.2 * 1048576.0,
        }),
        series: vec![11_000, 900, 3, 0, 0, 1, 2_000],
        written_bytes: 84_095_795, // 80.2 MiB
        sync_calls: [1, 0, 3],
        fork_us: Some(1_432.0),
        hists: busy_hists(),
        causes: None,
    }
}

fn model(procs: Vec<ProcRow>, sessions: Vec<SessionRow>) -> ViewModel {
    ViewModel {
        version: "0.1.0",
        pids: vec![],
        elapsed_ms: 83_000,
        interval_ms: 1000,
        host: HostFacts {
            thp: Some("madvise".into()),
            overcommit_memory: Some(1),
            kernel: Some("6.18.44-fc-v1147".into()),
        },
        procs,
        sessions,
        fork_lat: hist("fork latency (all)", Unit::Micros, &[(1432, 1), (2100, 1)]),
        losses: Losses::default(),
        ended_total: 0,
    }
}

fn redis(pid: u32, saving: Option<&str>) -> ProcRow {
    ProcRow {
        pid,
        instance: "127.0.0.1:6379".into(),
        rss: Some(358 << 20),
        saving: saving
            .map(|k| vec![(k.to_string(), 12_000)])
            .unwrap_or_default(),
    }
}

#[test]
fn idle_host_says_it_is_waiting() {
    let vm = model(vec![], vec![]);
    let text = draw(&vm, &UiState::default(), 80, 24);
    assert!(
        text.contains("Waiting for a Redis or Valkey server to start"),
        "{text}"
    );
    assert!(text.contains("no save running"), "{text}");
    assert!(text.contains("lost events 0"), "{text}");
    assert!(text.contains("q quit"), "{text}");

    // A server, but no save yet.
    let vm = model(vec![redis(4242, None)], vec![]);
    let text = draw(&vm, &UiState::default(), 80, 24);
    // The process row names the server as its sessions are named.
    assert!(
        text.lines()
            .any(|l| l.starts_with("127.0.0.1:6379  pid 4242 ") && l.contains("RSS  358.0 MiB")),
        "{text}"
    );
    assert!(text.contains("idle"), "{text}");
    assert!(text.contains("No save yet"), "{text}");
    assert!(text.contains("no events yet"), "{text}");
}

#[test]
fn one_active_save_at_80x24() {
    let vm = model(
        vec![redis(4242, Some("rdb-bgsave"))],
        vec![session(3, true)],
    );
    let text = draw(&vm, &UiState::default(), 80, 24);
    eprintln!("{text}");
    assert_eq!(text.lines().count(), 24);
    assert!(text.lines().all(|l| l.chars().count() == 80));
    assert!(text.contains("1 save running"), "{text}");
    assert!(text.contains("saving: rdb-bgsave for 12.0s"), "{text}");
    // The headings say what each column counts, in MiB and MiB/s only.
    let heads: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains(" Sessions"))
        .skip(1)
        .take(2)
        .collect();
    assert_eq!(
        heads[0].split_whitespace().collect::<Vec<_>>(),
        ["COW", "%", "RSS", "avg", "COW", "wrote", "avg", "disk"],
        "{text}"
    );
    assert_eq!(
        heads[1].split_whitespace().collect::<Vec<_>>(),
        [
            "id", "kind", "server", "ran", "MiB", "at", "fork", "MiB/s", "MiB", "MiB/s"
        ],
        "{text}"
    );
    assert!(!text.contains("MB"), "one unit family: {text}");
    // The session row: id, kind, server, ran, COW MiB, % of RSS at fork, average COW
    // MiB/s, written MiB, average disk MiB/s.
    let row = text
        .lines()
        .find(|l| l.contains("rdb-bgsave") && l.contains("120.5"))
        .expect("session row");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "●",
            "3",
            "rdb-bgsave",
            "127.0.0.1:6379",
            "12.0s",
            "120.5",
            "35%",
            "10.0",
            "80.2",
            "6.3"
        ],
        "{row}"
    );
    // The selected session's detail: the RSS the % is of, the last interval's rates.
    assert!(
        text.contains(" Session 3 rdb-bgsave 127.0.0.1:6379 · running 12.0s "),
        "{text}"
    );
    assert!(
        text.contains("RSS at fork 358.0 MiB · last 1s: COW 12.1, write 38.2, disk 36.2 MiB/s"),
        "{text}"
    );
    assert!(text.contains("write latency"), "{text}");
    assert!(text.contains("p50 12us p99 25us"), "{text}");
    assert!(text.contains("max 3.0ms"), "{text}");
    assert!(
        text.contains("8us") && text.contains("1800"),
        "a log2 bucket with its count: {text}"
    );
    assert!(text.contains("write size") && text.contains("4K"), "{text}");
    assert!(text.contains("fsync+fdatasync  "), "{text}");
    assert!(!text.contains('…'), "no panel title cut: {text}");
    assert!(text.contains("block I/O"), "{text}");
    // Pages per interval: a count with its suffix (11000 pages is `11k`, never a cut
    // `max 11`), and buckets as plain counts, not `8K` that reads as bytes.
    assert!(text.contains("COW pages/intvl  max 11k"), "{text}");
    assert!(text.contains("p50 3 p99 11k"), "{text}");
    assert!(text.contains("fork lat"), "{text}");
    assert!(text.contains("p50 1.4ms"), "fork latency quantiles: {text}");
    let wide = draw(&vm, &UiState::default(), 160, 50);
    assert!(
        wide.contains(" 512 ") && wide.contains(" 8192 ") && !wide.contains(" 8K "),
        "page buckets as counts: {wide}"
    );
    // Wider screens add the state, fsync, the trend and the write rate.
    let row = wide
        .lines()
        .find(|l| l.contains("rdb-bgsave") && l.contains("120.5"))
        .expect("session row");
    assert!(row.contains(" running ") && row.contains('█'), "{row}");
    assert!(
        row.split_whitespace().any(|w| w == "6.7") && row.trim_end().ends_with(" 4"),
        "{row}"
    );
    assert!(
        wide.contains("fork 1.4ms · parent 4242 child 5003"),
        "{wide}"
    );
}

/// A save already running when cowtrace attached: its COW before the attach is an
/// estimate, marked `≈` and counted in its share of the RSS at fork.
#[test]
fn a_session_attached_mid_save_shows_its_estimate() {
    let mut s = session(3, true);
    s.cow_bytes = 1 << 20;
    s.cow_estimate = Some(45 << 20);
    let vm = model(vec![redis(4242, Some("rdb-bgsave"))], vec![s]);
    let text = draw(&vm, &UiState::default(), 80, 24);
    let row = text
        .lines()
        .find(|l| l.starts_with('●'))
        .expect("session row");
    assert!(row.split_whitespace().any(|w| w == "≈46.0"), "{row}");
}

/// An ended session's columns mean what a running one's do: how long it ran and its
/// average rates (the last interval of a running one is in its detail line only).
#[test]
fn ended_sessions_keep_the_meaning_of_every_column() {
    let vm = model(vec![redis(4242, None)], vec![session(3, false)]);
    let text = draw(&vm, &UiState::default(), 80, 24);
    let row = text
        .lines()
        .find(|l| l.contains("rdb-bgsave") && l.contains("120.5"))
        .expect("session row");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "3",
            "rdb-bgsave",
            "127.0.0.1:6379",
            "12.0s",
            "120.5",
            "35%",
            "10.0",
            "80.2",
            "6.3"
        ],
        "{row}"
    );
    assert!(
        text.contains(" Session 3 rdb-bgsave 127.0.0.1:6379 · exit 0 after 12.0s "),
        "{text}"
    );
    assert!(
        text.contains("RSS at fork 358.0 MiB · fork 1.4ms · parent 4242 child 5003")
            && !text.contains("last 1s"),
        "{text}"
    );
}

#[test]
fn several_sessions_live_and_recent_with_selection() {
    let mut sessions = vec![session(12, true)];
    sessions.extend((1..=11).rev().map(|i| session(i, false)));
    sessions[3].status = "signal 9".into();
    sessions[5].hists = empty_hists();
    let mut vm = model(
        vec![redis(4242, Some("aof-rewrite")), redis(4343, None)],
        sessions,
    );
    vm.ended_total = 25;
    let mut ui = UiState::default();

    // Wide: a state column, all rows.
    let text = draw(&vm, &ui, 160, 50);
    eprintln!("{text}");
    assert!(text.contains("aof-rewrite") && text.contains("rdb-bgsave"));
    assert!(text.contains("signal 9"), "{text}");
    assert!(
        text.contains(" Sessions, newest first, 14 older not kept "),
        "every kept session fits: {text}"
    );
    for id in 1..=12 {
        assert!(
            text.lines().any(|l| l
                .split_whitespace()
                .find(|w| *w != "●")
                .is_some_and(|w| w == id.to_string())),
            "session {id} listed: {text}"
        );
    }
    assert!(
        text.contains("Session 12 aof-rewrite"),
        "newest selected by default: {text}"
    );
    assert!(text.contains("pid 4343") && text.contains("idle"), "{text}");
    assert!(text.contains("saving: aof-rewrite"), "{text}");

    // Down twice: session 10, which ended.
    assert_eq!(
        ui.on_key(KeyEvent::from(KeyCode::Down), &vm),
        Action::Redraw
    );
    ui.on_key(KeyEvent::from(KeyCode::Down), &vm);
    assert_eq!(ui.selected, Some(10));
    let text = draw(&vm, &ui, 160, 50);
    assert!(
        text.contains("Session 10 aof-rewrite") && text.contains("exit 0 after 12.0s"),
        "{text}"
    );
    // Session 7 has no histogram data.
    for _ in 0..3 {
        ui.on_key(KeyEvent::from(KeyCode::Down), &vm);
    }
    assert_eq!(ui.selected, Some(7));
    let text = draw(&vm, &ui, 160, 50);
    assert!(text.contains("no events yet"), "{text}");
    // At 80x24 the selected row is scrolled into view, and the title says which.
    let text = draw(&vm, &ui, 80, 24);
    assert!(text.contains("Session 7 rdb-bgsave"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("7 rdb-bgsave")),
        "row 7 visible: {text}"
    );
    assert!(
        text.contains(" Sessions, newest first: 1-6 of 12 (↑↓ scroll), 14 older not kept "),
        "{text}"
    );
    // Down to the oldest kept session.
    for _ in 0..20 {
        ui.on_key(KeyEvent::from(KeyCode::Down), &vm);
    }
    assert_eq!(ui.selected, Some(1));
    let text = draw(&vm, &ui, 80, 24);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("1 rdb-bgsave"))
            && text.contains(": 7-12 of 12 (↑↓ scroll)"),
        "the oldest row scrolled into view: {text}"
    );
    // Up to the top follows the newest again.
    for _ in 0..20 {
        ui.on_key(KeyEvent::from(KeyCode::Up), &vm);
    }
    assert_eq!(ui.selected, None);
    assert_eq!(ui.selected_index(&vm), Some(0));
}

#[test]
fn drops_are_shown() {
    let mut vm = model(
        vec![redis(4242, Some("rdb-bgsave"))],
        vec![session(1, true)],
    );
    vm.losses = Losses {
        detail_events: 1234,
        session_events: 2,
        decode_errors: 1,
        kernel_errors: 0,
    };
    let text = draw(&vm, &UiState::default(), 80, 24);
    assert!(
        text.contains("LOST 1234 COW + 2 session events, 1 bad records"),
        "{text}"
    );
    assert!(!text.contains("KERNEL FAILURES"), "{text}");
    // Kernel-side failures alone light the same red field, and are named.
    let mut failed = vm.clone();
    failed.losses = Losses {
        kernel_errors: 3,
        ..Losses::default()
    };
    let text = draw(&failed, &UiState::default(), 120, 24);
    assert!(
        text.contains(
            "LOST 0 COW + 0 session events, 0 bad records, 3 KERNEL FAILURES (maps full)"
        ),
        "{text}"
    );
    assert!(!text.contains("lost events 0"));
    // In red.
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| render(f, &vm, &UiState::default())).unwrap();
    let buf = t.backend().buffer();
    let y = 23;
    let x = (0..80)
        .find(|&x| buf[(x, y)].symbol() == "L")
        .expect("LOST on the last line");
    assert_eq!(buf[(x, y)].bg, ratatui::style::Color::Red);
}

#[test]
fn keys_pause_quit_and_interrupt() {
    let vm = model(vec![], vec![session(1, true)]);
    let mut ui = UiState::default();
    assert_eq!(
        ui.on_key(KeyEvent::from(KeyCode::Char('p')), &vm),
        Action::Redraw
    );
    assert!(ui.paused);
    let text = draw(&vm, &ui, 80, 24);
    assert!(text.lines().next().unwrap().contains("PAUSED"), "{text}");
    assert_eq!(
        ui.on_key(KeyEvent::from(KeyCode::Char('p')), &vm),
        Action::Refresh
    );
    assert!(!ui.paused);
    assert_eq!(
        ui.on_key(KeyEvent::from(KeyCode::Char('q')), &vm),
        Action::Quit
    );
    assert_eq!(
        ui.on_key(
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            &vm
        ),
        Action::Interrupt
    );
    assert_eq!(
        ui.on_key(KeyEvent::from(KeyCode::Char('x')), &vm),
        Action::Nothing
    );
}

#[test]
fn sizes_from_tiny_to_wide() {
    let mut sessions = vec![session(3, true), session(2, true)];
    sessions.extend((1..=10).map(|i| session(100 - i, false)));
    let vm = model((0..6).map(|i| redis(4000 + i, None)).collect(), sessions);
    for (w, h) in [
        (80, 24),
        (60, 16),
        (100, 30),
        (120, 40),
        (210, 60),
        (80, 60),
    ] {
        let text = draw(&vm, &UiState::default(), w, h);
        assert!(text.contains("Session 3 rdb-bgsave"), "{w}x{h}: {text}");
        assert!(
            text.contains("and 3 more"),
            "{w}x{h}: processes beyond 4 are counted: {text}"
        );
        assert!(
            text.lines().last().unwrap().contains("q quit"),
            "{w}x{h}: {text}"
        );
    }
    let text = draw(&vm, &UiState::default(), 50, 10);
    assert!(text.contains("needs 60x16"), "{text}");
}

/// Drawing cost: a busy model (12 sessions, full histograms) into a 200x50 buffer.
/// `cargo test --release --test view_render -- --nocapture drawing_cost` for the number.
#[test]
fn drawing_cost() {
    let mut sessions = vec![session(12, true), session(11, true)];
    sessions.extend((1..=10).rev().map(|i| session(i, false)));
    for s in &mut sessions {
        s.series = (0..512).map(|i| (i * 7919) % 4096).collect();
    }
    let vm = model(
        vec![
            redis(4242, Some("rdb-bgsave")),
            redis(4343, Some("aof-rewrite")),
        ],
        sessions,
    );
    let ui = UiState::default();
    let mut t = Terminal::new(TestBackend::new(200, 50)).unwrap();
    // 1000 frames in a release build (the number reported); fewer in a debug build.
    let n = if cfg!(debug_assertions) { 200 } else { 1000 };
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    for i in 0..n {
        // Alternate the selection so every frame differs, as on a live screen.
        let ui = UiState {
            selected: Some(if i % 2 == 0 { 12 } else { 5 }),
            ..ui.clone()
        };
        t.draw(|f| render(f, &vm, &ui)).unwrap();
    }
    let wall = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let per = cpu.as_secs_f64() * 1e6 / n as f64;
    eprintln!(
        "drawing cost: {n} frames 200x50 in {:.1} ms wall, {:.1} ms CPU: {per:.0} us CPU per frame ({})",
        wall.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3,
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    // Generous: a debug build on a slow CI machine must still pass.
    assert!(per < 50_000.0, "{per} us per frame");
}

fn cpu_time() -> std::time::Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The model of a busy screen (2 live and 10 ended sessions with full histograms),
/// built from the tracker and the store as the runner does at each refresh, holds every
/// session and every event, and building it again gives the same model.
#[test]
fn busy_screen_model_holds_every_session() {
    use agent_common::{
        CowCounters, EV_EXIT, EV_FDATASYNC, EV_FORK, EV_FSYNC, EV_SYNC_FILE_RANGE, EV_WRITE,
        IoCounters, IoEvent, ProcEvent,
    };
    use cowtrace::{
        events::session::Tracker,
        live::{
            screen::model::{Context, ProcInfo, build},
            store::Store,
        },
        trace::schema::Record,
    };
    const S: u64 = 1_000_000_000;
    let ev = |kind, pid, ts| ProcEvent {
        kind,
        pid,
        ppid: 10,
        tid: 10,
        ts_ns: ts,
        value: 0,
        comm: [0; 16],
        title: [0; 64],
        cow_proc: CowCounters::default(),
        cow_parent: CowCounters::default(),
        cow_child: CowCounters::default(),
        io: IoCounters::default(),
    };
    let mut t = Tracker::new();
    let mut st = Store::new(S);
    for i in 0..12u32 {
        let pid = 100 + i;
        t.on_fork(&ev(EV_FORK, pid, u64::from(i) * 10 * S));
        for j in 0..5000u64 {
            let lat = 1_000 + (j * 7919) % 2_000_000;
            t.on_io(&IoEvent {
                kind: EV_WRITE,
                session: pid,
                latency_ns: lat,
                bytes: 4096 + j % 3 * 512,
                ..Default::default()
            });
            // 50 fsync and fdatasync calls, and 100 sync_file_range calls that stay
            // out of the durable-sync histogram.
            if j % 100 == 0 {
                t.on_io(&IoEvent {
                    kind: if j % 200 == 0 { EV_FSYNC } else { EV_FDATASYNC },
                    session: pid,
                    latency_ns: lat * 10,
                    ..Default::default()
                });
            }
            if j % 50 == 0 {
                t.on_io(&IoEvent {
                    kind: EV_SYNC_FILE_RANGE,
                    session: pid,
                    latency_ns: 3_000,
                    ..Default::default()
                });
            }
        }
        for k in 1..=30u64 {
            let pages = CowCounters {
                copy_bytes: k * k * 4096 * 10,
                ..Default::default()
            };
            t.on_counters(
                pid,
                u64::from(i) * 10 * S + k * S / 3,
                pages,
                CowCounters::default(),
                IoCounters::default(),
            );
            st.on_interval(u64::from(i) * 10 * S + k * S / 3, &t);
        }
        if i < 10 {
            st.before_exit(&t, pid);
            for r in t.on_exit(&ev(EV_EXIT, pid, u64::from(i) * 10 * S + 9 * S), &[]) {
                if let Record::SessionEnd(e) = r {
                    st.on_end(&e);
                }
            }
        }
    }
    let procs = [ProcInfo {
        pid: 10,
        instance: "db1:6379".into(),
        rss: Some(1 << 30),
    }];
    let cx = Context {
        version: "0.1.0",
        now_ns: 130 * S,
        interval_ms: 1000,
        ..Default::default()
    };
    let vm = build(&st, &t, &procs, &cx);
    assert_eq!((vm.sessions.len(), vm.active()), (12, 2));
    assert_eq!(vm.ended_total, 10);
    // Live sessions first, then the ended ones.
    assert!(vm.sessions[..2].iter().all(|s| s.active));
    for s in &vm.sessions {
        let h = &s.hists;
        assert_eq!(
            (
                h.write_lat.q.count,
                h.write_size.q.count,
                h.sync_lat.q.count
            ),
            (5000, 5000, 50),
            "session {}",
            s.id
        );
    }
    // A pure function of its inputs: the next refresh, with nothing new, shows the same.
    assert_eq!(build(&st, &t, &procs, &cx), vm);
}
