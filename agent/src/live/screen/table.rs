//! The sessions table of the live view: one list of columns, each with its heading, its
//! width and a function from a session row to its cell, so that headings and cells can
//! never fall out of step.
use ratatui::style::{Color, Style};

use crate::{
    live::screen::model::SessionRow,
    text::units::{fmt_dur, fmt_mb, fmt_mib, fmt_pct},
};

/// Colours of the view (shared with `render`).
pub const SAVE: Color = Color::Yellow;
pub const LOST: Color = Color::Red;
pub const DIM: Color = Color::DarkGray;
const TREND: Color = Color::Magenta;

/// What a cell needs besides its row: the width of the trend column.
#[derive(Debug, Clone, Copy)]
pub struct CellCx {
    pub trend_width: usize,
}

/// One column: two heading lines, a width (0: takes the width left over), alignment,
/// and its cell.
pub struct Col {
    pub head: [&'static str; 2],
    pub width: u16,
    pub right: bool,
    /// Only on screens at least 100 columns wide.
    pub wide_only: bool,
    pub cell: fn(&SessionRow, CellCx) -> (String, Style),
}

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
    cell: fn(&SessionRow, CellCx) -> (String, Style),
) -> Col {
    Col {
        head,
        width,
        right,
        wide_only: false,
        cell,
    }
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
        wide_only: true,
        ..col(["", "state"], 9, false, |s, _| {
            let bad = !s.active && s.status != "exit 0";
            let style = if bad { Style::new().fg(LOST) } else { base(s) };
            (s.status.clone(), style)
        })
    },
    col(["", "age"], 6, true, |s, _| {
        (fmt_dur(s.elapsed_ms), base(s))
    }),
    col(["COW", "MiB"], 7, true, |s, _| {
        (fmt_mib(s.cow_bytes as f64), base(s))
    }),
    col(["", "%RSS"], 5, true, |s, _| {
        (s.pct_of_rss.map_or("-".into(), fmt_pct), base(s))
    }),
    col(["COW", "MiB/s"], 6, true, |s, _| {
        (fmt_mib(s.rates.cow), base(s))
    }),
    col(["COW", "trend"], 0, false, |s, cx| {
        let style = if s.active {
            Style::new().fg(TREND)
        } else {
            base(s)
        };
        (
            crate::live::screen::render::spark(&s.series, cx.trend_width),
            style,
        )
    }),
    col(["wrote", "MiB"], 7, true, |s, _| {
        (fmt_mib(s.written_bytes as f64), base(s))
    }),
    col(["write", "MB/s"], 6, true, |s, _| {
        (fmt_mb(s.rates.write), base(s))
    }),
    col(["disk", "MB/s"], 6, true, |s, _| {
        (fmt_mb(s.rates.disk), base(s))
    }),
    // fsync, fdatasync and sync_file_range calls together.
    col(["", "syncs"], 5, true, |s, _| {
        (s.sync_calls.iter().sum::<u64>().to_string(), base(s))
    }),
];

/// The columns shown at `width`, with the trend column's width: what the fixed columns
/// and the one-space gaps leave, at least 1.
pub fn layout(width: u16) -> (Vec<&'static Col>, u16) {
    let wide = width >= 100;
    let cols: Vec<&Col> = COLUMNS.iter().filter(|c| wide || !c.wide_only).collect();
    let fixed: u16 = cols.iter().map(|c| c.width).sum::<u16>() + cols.len() as u16 - 1;
    (cols, width.saturating_sub(fixed).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_screens_drop_the_state_and_the_trend_takes_the_rest() {
        let (cols, trend) = layout(80);
        assert!(cols.iter().all(|c| c.head[1] != "state"));
        let fixed: u16 = cols.iter().map(|c| c.width).sum::<u16>() + cols.len() as u16 - 1;
        assert_eq!(fixed + trend, 80);
        let (cols, _) = layout(120);
        assert_eq!(cols.len(), COLUMNS.len());
        assert_eq!(layout(10).1, 1);
    }
}
