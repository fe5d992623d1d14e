//! The sessions table of the live view: one list of columns, each with its heading, its
//! width and a function from a session row to its cell, so that headings and cells can
//! never fall out of step; and its drawing, scrolled to the selected row.
//!
//! Every column means the same for a running and an ended session: `ran` is from the
//! fork to now or to its end, sizes are totals so far, rates are averages over the run
//! (so far), and `% RSS at fork` is against the parent's RSS at the fork. Sizes and
//! rates are MiB and MiB/s.
use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table, TableState},
};

use crate::{
    live::screen::{
        model::{SessionRow, ViewModel},
        render::section,
    },
    text::units::{fmt_dur, fmt_mib, fmt_pct},
};

/// Colours of the view (shared with `render`).
pub const SAVE: Color = Color::Yellow;
pub const LOST: Color = Color::Red;
pub const DIM: Color = Color::DarkGray;
const TREND: Color = Color::Magenta;

/// How wide a column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Fixed(u16),
    /// The server's name: as wide as the longest one (up to `SERVER_MAX`) when the
    /// trend is shown, else whatever the fixed columns leave.
    Server,
    /// The COW sparkline (pages copied per interval, newest last): whatever is left.
    Trend,
}

/// One column: two heading lines, a width, alignment, the narrowest screen that shows
/// it, and its cell (given the column's width).
pub struct Col {
    pub head: [&'static str; 2],
    pub width: Width,
    pub right: bool,
    /// Shown on screens at least this wide.
    pub from_width: u16,
    pub cell: fn(&SessionRow, usize) -> (String, Style),
}

/// The server column's width when the trend takes the rest.
pub const SERVER_MAX: u16 = 24;
const SERVER_MIN: u16 = 8;

/// The style of an ordinary cell: dim once the session has ended.
fn base(s: &SessionRow) -> Style {
    if s.active {
        Style::new()
    } else {
        Style::new().fg(DIM)
    }
}

const fn col(
    head: [&'static str; 2],
    width: u16,
    right: bool,
    cell: fn(&SessionRow, usize) -> (String, Style),
) -> Col {
    Col {
        head,
        width: Width::Fixed(width),
        right,
        from_width: 0,
        cell,
    }
}

/// `text` in at most `w` columns, keeping its end (a port or a socket's file name):
/// `…0.0.1:6379`.
pub fn fit_left(text: &str, w: usize) -> String {
    let n = text.chars().count();
    if n <= w {
        return text.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let tail: String = text.chars().skip(n + 1 - w).collect();
    format!("…{tail}")
}

/// Every column, left to right.
pub const COLUMNS: &[Col] = &[
    col(["", "id"], 5, true, |s, _| {
        let style = if s.active {
            Style::new().fg(SAVE)
        } else {
            base(s)
        };
        (
            format!("{}{:>4}", if s.active { "●" } else { " " }, s.id),
            style,
        )
    }),
    col(["", "kind"], 11, false, |s, _| (s.kind.clone(), base(s))),
    Col {
        width: Width::Server,
        ..col(["", "server"], 0, false, |s, w| {
            (fit_left(&s.instance, w), base(s))
        })
    },
    Col {
        from_width: 100,
        ..col(["", "state"], 9, false, |s, _| {
            let bad = !s.active && s.status != "exit 0";
            let style = if bad { Style::new().fg(LOST) } else { base(s) };
            (s.status.clone(), style)
        })
    },
    col(["", "ran"], 5, true, |s, _| {
        (fmt_dur(s.elapsed_ms), base(s))
    }),
    col(["COW", "MiB"], 6, true, |s, _| match s.cow_estimate {
        // Attached mid-save: what was copied before is an estimate.
        Some(est) => (
            format!("≈{}", fmt_mib(s.cow_bytes.saturating_add(est) as f64)),
            base(s),
        ),
        None => (fmt_mib(s.cow_bytes as f64), base(s)),
    }),
    col(["% RSS", "at fork"], 7, true, |s, _| {
        (s.pct_of_rss.map_or("-".into(), fmt_pct), base(s))
    }),
    col(["avg COW", "MiB/s"], 7, true, |s, _| {
        (fmt_mib(s.rates.cow), base(s))
    }),
    Col {
        width: Width::Trend,
        from_width: 120,
        ..col(["COW", "trend"], 0, false, |s, w| {
            let style = if s.active {
                Style::new().fg(TREND)
            } else {
                base(s)
            };
            (crate::live::screen::render::spark(&s.series, w), style)
        })
    },
    col(["wrote", "MiB"], 6, true, |s, _| {
        (fmt_mib(s.written_bytes as f64), base(s))
    }),
    Col {
        from_width: 120,
        ..col(["avg write", "MiB/s"], 9, true, |s, _| {
            (fmt_mib(s.rates.write), base(s))
        })
    },
    col(["avg disk", "MiB/s"], 8, true, |s, _| {
        (fmt_mib(s.rates.disk), base(s))
    }),
    // fsync, fdatasync and sync_file_range calls together.
    Col {
        from_width: 100,
        ..col(["", "syncs"], 5, true, |s, _| {
            (s.sync_calls.iter().sum::<u64>().to_string(), base(s))
        })
    },
];

/// The columns shown at `width` with the width of each, when the longest server name
/// is `server_want` characters. The flexible columns get what the fixed ones and the
/// one-space gaps leave, at least 1 each.
pub fn layout(width: u16, server_want: u16) -> Vec<(&'static Col, u16)> {
    let cols: Vec<&Col> = COLUMNS.iter().filter(|c| width >= c.from_width).collect();
    let fixed: u16 = cols
        .iter()
        .map(|c| match c.width {
            Width::Fixed(w) => w,
            _ => 0,
        })
        .sum::<u16>()
        + cols.len() as u16
        - 1;
    let left = width.saturating_sub(fixed);
    let has_trend = cols.iter().any(|c| c.width == Width::Trend);
    let server = if has_trend {
        server_want
            .clamp(SERVER_MIN, SERVER_MAX)
            .min(left.saturating_sub(1))
    } else {
        left
    }
    .max(1);
    let trend = left.saturating_sub(server).max(1);
    cols.into_iter()
        .map(|c| {
            let w = match c.width {
                Width::Fixed(w) => w,
                Width::Server => server,
                Width::Trend => trend,
            };
            (c, w)
        })
        .collect()
}

/// The sessions table's title: what it lists, which rows are in view when they do not
/// all fit (the others are a key away), and how many ended sessions are no longer kept.
pub fn sessions_title(total: usize, first: usize, visible: usize, not_kept: u64) -> String {
    let mut t = " Sessions, newest first".to_string();
    if visible < total {
        let last = (first + visible).min(total);
        t.push_str(&format!(": {}-{last} of {total} (↑↓ scroll)", first + 1));
    }
    if not_kept > 0 {
        t.push_str(&format!(", {not_kept} older not kept"));
    }
    t.push(' ');
    t
}

pub fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, sel: Option<usize>) {
    let not_kept = vm
        .ended_total
        .saturating_sub(vm.sessions.iter().filter(|s| !s.active).count() as u64);
    let inner = section(String::new()).inner(area);
    if vm.sessions.is_empty() {
        frame.render_widget(section(sessions_title(0, 0, 0, not_kept)), area);
        let text = vm.waiting().unwrap_or_default();
        frame.render_widget(
            Paragraph::new(Line::styled(text, Style::new().fg(DIM))),
            inner,
        );
        return;
    }
    let server_want = vm
        .sessions
        .iter()
        .map(|s| s.instance.chars().count())
        .max()
        .unwrap_or(0)
        .min(u16::MAX as usize) as u16;
    let cols = layout(inner.width, server_want);
    let aligned = |right: bool, text: String| {
        if right {
            Line::from(text).alignment(Alignment::Right)
        } else {
            Line::from(text)
        }
    };
    let head_style = Style::new().fg(DIM);
    let header = Row::new(cols.iter().map(|(c, _)| {
        let lines = vec![
            aligned(c.right, c.head[0].into()),
            aligned(c.right, c.head[1].into()),
        ];
        Cell::from(ratatui::text::Text::from(lines).style(head_style))
    }))
    .height(2);
    let rows = vm.sessions.iter().map(|s| {
        Row::new(cols.iter().map(|&(c, w)| {
            let (text, style) = (c.cell)(s, w as usize);
            Cell::from(aligned(c.right, text).style(style))
        }))
    });
    let table = Table::new(rows, cols.iter().map(|&(_, w)| Constraint::Length(w)))
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(sel);
    frame.render_stateful_widget(table, inner, &mut state);
    // The table has scrolled the selected row into view: say which rows are shown.
    let visible = inner.height.saturating_sub(2) as usize;
    frame.render_widget(
        section(sessions_title(
            vm.sessions.len(),
            state.offset(),
            visible,
            not_kept,
        )),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(cols: &[(&Col, u16)]) -> u16 {
        cols.iter().map(|(_, w)| w).sum::<u16>() + cols.len() as u16 - 1
    }

    #[test]
    fn narrow_screens_keep_the_server_and_the_main_figures() {
        let cols = layout(80, 14);
        let heads: Vec<&str> = cols.iter().map(|(c, _)| c.head[1]).collect();
        assert_eq!(
            heads,
            [
                "id", "kind", "server", "ran", "MiB", "at fork", "MiB/s", "MiB", "MiB/s"
            ]
        );
        assert_eq!(total(&cols), 80);
        let server = cols.iter().find(|(c, _)| c.head[1] == "server").unwrap().1;
        assert!(server >= 14, "127.0.0.1:6379 fits at 80 columns: {server}");
    }

    #[test]
    fn wide_screens_add_state_syncs_then_the_trend() {
        let cols = layout(100, 14);
        assert!(cols.iter().any(|(c, _)| c.head[1] == "state"));
        assert!(cols.iter().any(|(c, _)| c.head[1] == "syncs"));
        assert!(cols.iter().all(|(c, _)| c.width != Width::Trend));
        assert_eq!(total(&cols), 100);
        let cols = layout(160, 40);
        assert_eq!(cols.len(), COLUMNS.len());
        assert_eq!(total(&cols), 160);
        let server = cols.iter().find(|(c, _)| c.head[1] == "server").unwrap().1;
        assert_eq!(server, SERVER_MAX);
        assert_eq!(
            layout(10, 14)
                .iter()
                .find(|(c, _)| c.head[1] == "server")
                .unwrap()
                .1,
            1
        );
    }

    #[test]
    fn the_sessions_title_says_which_rows_are_shown() {
        assert_eq!(sessions_title(12, 0, 20, 0), " Sessions, newest first ");
        assert_eq!(
            sessions_title(50, 6, 6, 3),
            " Sessions, newest first: 7-12 of 50 (↑↓ scroll), 3 older not kept "
        );
    }

    #[test]
    fn long_names_keep_their_end() {
        assert_eq!(fit_left("127.0.0.1:6379", 20), "127.0.0.1:6379");
        assert_eq!(fit_left("127.0.0.1:6379", 11), "…0.0.1:6379");
        assert_eq!(
            fit_left("/tmp/cowtrace-test-redis-1234-0/redis.sock", 12),
            "…/redis.sock"
        );
        assert_eq!(fit_left("abc", 0), "");
    }
}
