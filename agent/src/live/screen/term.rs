//! The terminal: raw mode and the alternate screen while the view runs, keys as an
//! async stream, and restoring the terminal on every way out (drop, error, panic).
use std::{
    io::{self, Stdout},
    sync::{
        Once,
        atomic::{AtomicBool, Ordering},
    },
};

use crossterm::{
    cursor,
    event::{Event, EventStream},
    execute,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{Terminal, backend::CrosstermBackend};

use crate::live::screen::{model::ViewModel, render::render, ui::UiState};

/// True while the terminal is in raw mode on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Leave raw mode and the alternate screen, once; safe to call from a panic hook.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        // Blank the alternate screen first: tmux reflows it to the size it had when it
        // was entered and would push the overflow into the normal screen's history.
        let _ = execute!(
            io::stdout(),
            terminal::Clear(terminal::ClearType::All),
            cursor::MoveTo(0, 0),
            LeaveAlternateScreen,
            cursor::Show
        );
    }
}

/// The terminal in use by the view; dropping it restores the terminal.
pub struct Term {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    events: Option<EventStream>,
    /// The log level before the view took the screen (log lines would garble it).
    log_level: log::LevelFilter,
}

impl Term {
    pub fn enter() -> io::Result<Self> {
        // A panic restores the terminal before its message is printed.
        HOOK.call_once(|| {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                prev(info);
            }));
        });
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on, an early return drops `guard`, which restores.
        let guard = Restore;
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        std::mem::forget(guard);
        let log_level = log::max_level();
        log::set_max_level(log::LevelFilter::Off);
        Ok(Self {
            terminal,
            events: Some(EventStream::new()),
            log_level,
        })
    }

    pub fn draw(&mut self, vm: &ViewModel, ui: &UiState) -> io::Result<()> {
        self.terminal.draw(|f| render(f, vm, ui)).map(|_| ())
    }

    /// The next key or resize (pending forever if the input ends). An input error is
    /// returned: without keys there is no way to quit, as raw mode turns Ctrl-C into a key.
    pub async fn next_event(&mut self) -> io::Result<Event> {
        let Some(events) = self.events.as_mut() else {
            return std::future::pending().await;
        };
        let next = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut *events), cx)
        })
        .await;
        match next {
            Some(r) => r,
            None => {
                self.events = None;
                std::future::pending().await
            }
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        self.events = None;
        restore();
        log::set_max_level(self.log_level);
    }
}

struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}
