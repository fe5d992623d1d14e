//! Drawing the live view: a pure function of the model and the UI state, so that the
//! tests draw it into ratatui's `TestBackend` and read the text back.
//!
//! Layout, top to bottom: a header (is a save running?), the traced Redis processes
//! (each named as its sessions are: `host:port`, a socket path or `pid N`), the sessions
//! table (scrolled to the selected row), the selected session's detail and histograms,
//! and a footer with the keys and the lost-event count (red when nonzero). Everything
//! fits 80x24; sizes and rates are MiB and MiB/s throughout.
use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Wrap},
};

use crate::{
    live::screen::{
        model::{HistView, SessionRow, ViewModel},
        table::{self, DIM, LOST, SAVE, fit_left},
        ui::UiState,
    },
    text::{
        sync::DURABLE_LATENCY,
        units::{
            Unit, bucket_label, fmt_bytes, fmt_count, fmt_dur, fmt_mib, fmt_secs, fmt_us, fmt_val,
        },
    },
};

/// Below this the view asks for a larger terminal (or `--plain`).
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;
/// Redis processes listed before "+N more".
const MAX_PROCS: usize = 4;

const IDLE: Color = Color::Green;

pub fn render(frame: &mut Frame, vm: &ViewModel, ui: &UiState) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "cowtrace: this terminal is {}x{}; the live view needs {MIN_WIDTH}x{MIN_HEIGHT}. Enlarge it, or run with --plain. q quits.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let proc_lines = vm.procs.len().clamp(1, MAX_PROCS) as u16;
    let (cols, rows) = hist_grid(area.width);
    // The detail line, then each histogram panel wants at least its two heading lines
    // and two buckets.
    let hist_min = 2 + rows * 4;
    let fixed = 1 + (1 + proc_lines) + 1;
    let sessions_want = 3 + vm.sessions.len().max(1) as u16;
    let sessions_h = sessions_want
        .min(area.height.saturating_sub(fixed + hist_min))
        .max(4);
    let [header, procs, sessions, hists, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1 + proc_lines),
        Constraint::Length(sessions_h),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let sel = ui.selected_index(vm);
    render_header(frame, header, vm, ui);
    render_procs(frame, procs, vm);
    table::render(frame, sessions, vm, sel);
    render_hists(frame, hists, vm, sel.map(|i| &vm.sessions[i]), cols, rows);
    render_footer(frame, footer, vm);
}

/// Histogram panels per row and rows of panels for a terminal `width` wide.
fn hist_grid(width: u16) -> (u16, u16) {
    match width {
        w if w >= 204 => (6, 1),
        w if w >= 78 => (3, 2),
        _ => (2, 3),
    }
}

fn render_header(frame: &mut Frame, area: Rect, vm: &ViewModel, ui: &UiState) {
    let sep = || Span::styled(" │ ", Style::new().fg(DIM));
    let targets = if vm.pids.is_empty() {
        "all Redis servers".to_string()
    } else {
        format!(
            "pid {}",
            vm.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let active = vm.active();
    let state = if active > 0 {
        Span::styled(
            format!(
                "● {active} save{} running",
                if active == 1 { "" } else { "s" }
            ),
            Style::new().fg(SAVE).add_modifier(Modifier::BOLD),
        )
    } else {
        Span::styled("○ no save running", Style::new().fg(IDLE))
    };
    let mut spans = vec![
        Span::styled(
            format!("cowtrace {}", vm.version),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        sep(),
        state,
        sep(),
        Span::raw(targets),
        sep(),
        Span::raw(format!(
            "up {}",
            if vm.elapsed_ms < 60_000 {
                format!("{}s", vm.elapsed_ms / 1000)
            } else {
                fmt_dur(vm.elapsed_ms)
            }
        )),
    ];
    if area.width >= 100 {
        spans.extend([
            sep(),
            Span::raw(format!("every {}", fmt_secs(vm.interval_ms))),
        ]);
        if let Some(thp) = &vm.host.thp {
            let style = if thp == "always" {
                Style::new().fg(LOST)
            } else {
                Style::new()
            };
            spans.extend([sep(), Span::styled(format!("THP {thp}"), style)]);
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
    if ui.paused {
        let p = Span::styled(
            " PAUSED ",
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        );
        frame.render_widget(
            Paragraph::new(Line::from(p)).alignment(Alignment::Right),
            area,
        );
    }
}

pub fn section(title: String) -> Block<'static> {
    Block::new()
        .borders(Borders::TOP)
        .border_style(Style::new().fg(DIM))
        .title(Span::styled(
            title,
            Style::new().add_modifier(Modifier::BOLD),
        ))
}

fn render_procs(frame: &mut Frame, area: Rect, vm: &ViewModel) {
    let block = section(" Redis ".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines: Vec<Line> = Vec::new();
    if vm.procs.is_empty() {
        lines.push(Line::styled(
            vm.waiting().unwrap_or_default(),
            Style::new().fg(DIM),
        ));
    }
    let more = vm.procs.len().saturating_sub(MAX_PROCS);
    let shown = if more > 0 {
        MAX_PROCS - 1
    } else {
        vm.procs.len()
    };
    // Names in a column as wide as the longest, up to a third of the screen.
    let name_w = vm.procs[..shown]
        .iter()
        .map(|p| p.instance.chars().count())
        .max()
        .unwrap_or(0)
        .min(inner.width as usize / 3)
        .max(8);
    for p in &vm.procs[..shown] {
        let mut spans = vec![
            Span::styled(
                format!("{:<name_w$}", fit_left(&p.instance, name_w)),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("  pid {:<7}", p.pid)),
            Span::raw(format!(
                " RSS {:>10}  ",
                p.rss.map_or("?".into(), fmt_bytes)
            )),
        ];
        if p.saving.is_empty() {
            spans.push(Span::styled("idle", Style::new().fg(IDLE)));
        } else {
            let what: Vec<String> = p
                .saving
                .iter()
                .map(|(k, ms)| format!("{k} for {}", fmt_dur(*ms)))
                .collect();
            spans.push(Span::styled(
                format!("saving: {}", what.join(", ")),
                Style::new().fg(SAVE).add_modifier(Modifier::BOLD),
            ));
        }
        lines.push(Line::from(spans));
    }
    if more > 0 {
        lines.push(Line::styled(
            format!("… and {} more", vm.procs.len() - shown),
            Style::new().fg(DIM),
        ));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_hists(
    frame: &mut Frame,
    area: Rect,
    vm: &ViewModel,
    s: Option<&SessionRow>,
    cols: u16,
    rows: u16,
) {
    let title = match s {
        Some(s) => format!(
            " Session {} {} {} · {} ",
            s.id,
            s.kind,
            s.instance,
            if s.active {
                format!("running {}", fmt_dur(s.elapsed_ms))
            } else {
                format!("{} after {}", s.status, fmt_dur(s.elapsed_ms))
            },
        ),
        None => " Histograms ".to_string(),
    };
    let block = section(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [detail, inner] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    if let Some(s) = s {
        frame.render_widget(
            Paragraph::new(Line::styled(
                detail_line(s, vm.interval_ms, detail.width as usize),
                Style::new().fg(DIM),
            )),
            detail,
        );
    }
    let empty = |name, unit| HistView::empty(name, unit);
    let panels: Vec<(HistView, Color)> = match s {
        Some(s) => vec![
            (s.hists.write_lat.clone(), Color::Cyan),
            (s.hists.write_size.clone(), Color::Cyan),
            (s.hists.sync_lat.clone(), Color::Cyan),
            (s.hists.disk_lat.clone(), Color::Blue),
            (s.hists.cow_per_interval.clone(), Color::Magenta),
            (vm.fork_lat.clone(), Color::Yellow),
        ],
        None => vec![
            (empty("write latency", Unit::Micros), Color::Cyan),
            (empty("write size", Unit::Bytes), Color::Cyan),
            (empty(DURABLE_LATENCY, Unit::Micros), Color::Cyan),
            (empty("block I/O latency", Unit::Micros), Color::Blue),
            (
                empty(crate::live::screen::model::COW_HIST, Unit::Pages),
                Color::Magenta,
            ),
            (vm.fork_lat.clone(), Color::Yellow),
        ],
    };
    let row_areas =
        Layout::vertical((0..rows).map(|_| Constraint::Ratio(1, rows as u32))).split(inner);
    for (r, row_area) in row_areas.iter().enumerate() {
        let cells = Layout::horizontal((0..cols).map(|_| Constraint::Ratio(1, cols as u32)))
            .split(*row_area);
        for (c, cell) in cells.iter().enumerate() {
            let Some((h, color)) = panels.get(r * cols as usize + c) else {
                continue;
            };
            // Two blank columns between panels.
            let w = cell
                .width
                .saturating_sub(if c + 1 < cols as usize { 2 } else { 0 });
            let lines = hist_lines(h, w as usize, cell.height as usize, *color);
            frame.render_widget(Paragraph::new(lines), Rect { width: w, ..*cell });
        }
    }
}

/// The selected session's detail, in at most `width` columns: the base of its `% RSS
/// at fork`, the last interval's rates while it runs (the table's are averages), its
/// fork time and its pids. A part that does not fit is left out whole, never cut.
pub fn detail_line(s: &SessionRow, interval_ms: u64, width: usize) -> String {
    let mut parts = vec![format!(
        "RSS at fork {}",
        s.rss_at_fork.map_or("?".into(), fmt_bytes)
    )];
    if let Some(n) = s.now {
        parts.push(format!(
            "last {}: COW {}, write {}, disk {} MiB/s",
            fmt_secs(interval_ms),
            fmt_mib(n.cow),
            fmt_mib(n.write),
            fmt_mib(n.disk)
        ));
    }
    parts.push(format!(
        "fork {}",
        s.fork_us.map_or("?".into(), |us| fmt_us(us.round() as u64))
    ));
    parts.push(format!("parent {} child {}", s.parent_pid, s.child_pid));
    if let Some(c) = &s.causes {
        parts.push(format!("causes {c}"));
    }
    let mut line = String::new();
    for p in parts {
        let sep = if line.is_empty() { "" } else { " · " };
        if line.chars().count() + sep.chars().count() + p.chars().count() <= width {
            line.push_str(sep);
            line.push_str(&p);
        }
    }
    line
}

fn render_footer(frame: &mut Frame, area: Rect, vm: &ViewModel) {
    let keys = Line::from(vec![
        Span::styled("q", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(" quit  "),
        Span::styled("p", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(" pause  "),
        Span::styled("↑↓", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(" select"),
    ])
    .style(Style::new().fg(DIM));
    frame.render_widget(Paragraph::new(keys), area);
    let l = &vm.losses;
    let lost = if l.any() {
        Span::styled(
            format!(
                " LOST {} COW + {} session events, {} bad records{} ",
                l.detail_events,
                l.session_events,
                l.decode_errors,
                if l.kernel_errors > 0 {
                    format!(", {} KERNEL FAILURES (maps full)", l.kernel_errors)
                } else {
                    String::new()
                }
            ),
            Style::new()
                .fg(Color::White)
                .bg(LOST)
                .add_modifier(Modifier::BOLD),
        )
    } else {
        Span::styled("lost events 0", Style::new().fg(DIM))
    };
    frame.render_widget(
        Paragraph::new(Line::from(lost)).alignment(Alignment::Right),
        area,
    );
}

/// The lines of one histogram panel `w` columns wide and `h` lines high: its name and
/// max, p50 and p99 and the count, then log2 buckets with bars.
pub fn hist_lines(hv: &HistView, w: usize, h: usize, color: Color) -> Vec<Line<'static>> {
    let mut out: Vec<Line<'static>> = Vec::new();
    let name = if hv.name.chars().count() + 10 > w {
        short_name(hv.name)
    } else {
        hv.name
    };
    let q = &hv.q;
    let bold = Style::new().add_modifier(Modifier::BOLD);
    if q.count == 0 {
        out.push(Line::from(Span::styled(name.to_string(), bold)));
        out.push(Line::styled("no events yet", Style::new().fg(DIM)));
        return out;
    }
    out.push(spread(
        name,
        bold,
        format!("max {}", fmt_val(q.max, hv.unit)),
        w,
    ));
    out.push(spread(
        &format!(
            "p50 {} p99 {}",
            fmt_val(q.p50, hv.unit),
            fmt_val(q.p99, hv.unit)
        ),
        Style::new(),
        format!("n {}", fmt_count(q.count)),
        w,
    ));
    let room = h.saturating_sub(out.len());
    if room == 0 || hv.buckets.is_empty() {
        return out;
    }
    let shown = fit(&hv.buckets, room);
    let labels: Vec<String> = shown
        .iter()
        .map(|&(lo, _)| bucket_label(lo, hv.unit))
        .collect();
    let counts: Vec<String> = shown.iter().map(|&(_, c)| fmt_count(c)).collect();
    let lw = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let cw = counts.iter().map(String::len).max().unwrap_or(0);
    let bar_w = w.saturating_sub(lw + cw + 2);
    let peak = shown.iter().map(|&(_, c)| c).max().unwrap_or(0).max(1);
    for ((label, count), &(_, c)) in labels.iter().zip(&counts).zip(&shown) {
        out.push(Line::from(vec![
            Span::styled(format!("{label:>lw$} "), Style::new().fg(DIM)),
            Span::styled(
                format!("{:<bar_w$}", bar(c, peak, bar_w)),
                Style::new().fg(color),
            ),
            Span::raw(format!(" {count:>cw$}")),
        ]));
    }
    out
}

/// `left` then `right` at the right edge of `w` columns. When both do not fit, `left`
/// is cut (with `…`), never `right`: a value is never shown without its unit or
/// suffix (`max 10.1k`, not `max 10.1`).
fn spread(left: &str, style: Style, right: String, w: usize) -> Line<'static> {
    let rw = right.chars().count();
    let room = w.saturating_sub(rw + 1);
    let left = if left.chars().count() > room {
        let keep: String = left.chars().take(room.saturating_sub(1)).collect();
        if room > 0 { format!("{keep}…") } else { keep }
    } else {
        left.to_string()
    };
    let gap = w.saturating_sub(left.chars().count() + rw).max(1);
    Line::from(vec![
        Span::styled(left, style),
        Span::raw(" ".repeat(gap)),
        Span::raw(right),
    ])
}

fn short_name(name: &'static str) -> &'static str {
    match name {
        "block I/O latency" => "block I/O lat.",
        // Its figures are latencies (µs, ms): the name alone fits a narrow panel.
        DURABLE_LATENCY => "fsync+fdatasync",
        "fork latency (all)" => "fork lat. (all)",
        "COW pages/interval" => "COW pages/intvl",
        other => other,
    }
}

/// At most `n` rows for `b` (contiguous power-of-two buckets): all of them if they
/// fit, else the non-empty ones, else pairs of buckets merged (each row then covers
/// four times its lower bound) until they fit. Nothing is left out.
pub fn fit(b: &[(u64, u64)], n: usize) -> Vec<(u64, u64)> {
    let mut b = b.to_vec();
    loop {
        if b.len() <= n || n == 0 {
            return b;
        }
        let nonzero: Vec<(u64, u64)> = b.iter().copied().filter(|x| x.1 > 0).collect();
        if nonzero.len() <= n {
            return nonzero;
        }
        b = b
            .chunks(2)
            .map(|c| (c[0].0, c.iter().map(|x| x.1).sum()))
            .collect();
    }
}

const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];

/// A horizontal bar of `v / peak` of `w` columns, in eighths of a column.
pub fn bar(v: u64, peak: u64, w: usize) -> String {
    if v == 0 || peak == 0 || w == 0 {
        return String::new();
    }
    let eighths = ((v as u128 * w as u128 * 8).div_ceil(peak as u128)) as usize;
    let mut s = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(EIGHTHS[eighths % 8 - 1]);
    }
    s
}

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The newest `w` values as a sparkline scaled to their maximum (blank for zero).
pub fn spark(series: &[u64], w: usize) -> String {
    let tail = &series[series.len().saturating_sub(w)..];
    let peak = tail.iter().copied().max().unwrap_or(0);
    tail.iter()
        .map(|&v| {
            if v == 0 || peak == 0 {
                ' '
            } else {
                SPARKS[((v as u128 * 8).div_ceil(peak as u128) as usize).clamp(1, 8) - 1]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sparks() {
        assert_eq!(bar(10, 10, 4), "████");
        assert_eq!(bar(1, 16, 4), "▎");
        assert_eq!(bar(0, 16, 4), "");
        assert_eq!(spark(&[0, 1, 4, 8], 10), " ▁▄█");
        assert_eq!(spark(&[8, 0, 8, 4], 2), "█▄");
        assert_eq!(spark(&[], 5), "");
    }

    #[test]
    fn a_value_keeps_its_suffix_and_the_name_gives_way() {
        let text = |l: Line| {
            l.spans
                .iter()
                .map(|s| s.content.to_string())
                .collect::<String>()
        };
        let l = spread("COW pages/interval", Style::new(), "max 10.1k".into(), 24);
        assert_eq!(text(l), "COW pages/int… max 10.1k");
        let l = spread("write size", Style::new(), "max 4K".into(), 24);
        assert_eq!(text(l), "write size        max 4K");
        let l = spread("p50 3 p99 11k", Style::new(), "n 7".into(), 10);
        assert_eq!(text(l), "p50 3… n 7");
    }

    #[test]
    fn the_detail_leaves_out_what_does_not_fit_whole() {
        use crate::live::{screen::model::SessionHists, store::Rates};
        let mib = 1048576.0;
        let s = SessionRow {
            id: 1,
            kind: "rdb-bgsave".into(),
            instance: "db1:6379".into(),
            parent_pid: 10,
            child_pid: 11,
            active: true,
            status: "running".into(),
            elapsed_ms: 2000,
            cow_bytes: 0,
            cow_estimate: None,
            pct_of_rss: None,
            rss_at_fork: Some(1 << 30),
            rates: Rates::default(),
            now: Some(Rates {
                cow: 12.0 * mib,
                write: 1.5 * mib,
                disk: 0.0,
            }),
            series: vec![],
            written_bytes: 0,
            sync_calls: [0; 3],
            fork_us: Some(900.0),
            causes: None,
            hists: SessionHists::of(&Default::default(), None),
        };
        assert_eq!(
            detail_line(&s, 1000, 200),
            "RSS at fork 1.00 GiB · last 1s: COW 12.0, write 1.5, disk 0.0 MiB/s · fork 900us · parent 10 child 11"
        );
        assert_eq!(
            detail_line(&s, 500, 80),
            "RSS at fork 1.00 GiB · last 0.5s: COW 12.0, write 1.5, disk 0.0 MiB/s"
        );
        let ended = SessionRow {
            active: false,
            now: None,
            rss_at_fork: None,
            ..s
        };
        assert_eq!(
            detail_line(&ended, 1000, 80),
            "RSS at fork ? · fork 900us · parent 10 child 11"
        );
        let caused = SessionRow {
            causes: Some("SET 96.0%, other 4.0%".into()),
            ..ended.clone()
        };
        assert_eq!(
            detail_line(&caused, 1000, 120),
            "RSS at fork ? · fork 900us · parent 10 child 11 · causes SET 96.0%, other 4.0%"
        );
    }

    #[test]
    fn fit_drops_empty_rows_then_merges() {
        let b = [(1, 1), (2, 0), (4, 9), (8, 0), (16, 1)];
        assert_eq!(fit(&b, 9), b.to_vec());
        assert_eq!(fit(&b, 3), vec![(1, 1), (4, 9), (16, 1)]);
        assert_eq!(fit(&b, 2), vec![(1, 10), (16, 1)]);
        assert_eq!(fit(&b, 1), vec![(1, 11)]);
    }
}
