//! What the person at the keyboard chose: the selected session and pause. Pure.
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::live::screen::model::ViewModel;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiState {
    /// The session whose histograms are shown; None follows the newest.
    pub selected: Option<u64>,
    /// The display is frozen (counting goes on).
    pub paused: bool,
}

/// Rows moved by PageUp and PageDown.
const PAGE: isize = 10;

/// What a key asks the event loop to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Redraw,
    /// `p` pressed to resume: rebuild the model, then draw.
    Refresh,
    /// `q` or Esc.
    Quit,
    /// Ctrl-C: raw mode turns it into a key instead of SIGINT.
    Interrupt,
}

impl UiState {
    /// Row of the selected session in `vm.sessions` (the newest when none is chosen or
    /// the chosen one is gone).
    pub fn selected_index(&self, vm: &ViewModel) -> Option<usize> {
        if vm.sessions.is_empty() {
            return None;
        }
        Some(
            self.selected
                .and_then(|id| vm.sessions.iter().position(|s| s.id == id))
                .unwrap_or(0),
        )
    }

    pub fn on_key(&mut self, key: KeyEvent, vm: &ViewModel) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => Action::Interrupt,
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('p' | 'P' | ' ') => {
                self.paused = !self.paused;
                if self.paused {
                    Action::Redraw
                } else {
                    Action::Refresh
                }
            }
            KeyCode::Up | KeyCode::Char('k') => self.step(vm, -1),
            KeyCode::Down | KeyCode::Char('j') => self.step(vm, 1),
            KeyCode::PageUp => self.step(vm, -PAGE),
            KeyCode::PageDown => self.step(vm, PAGE),
            KeyCode::Home => {
                self.selected = None;
                Action::Redraw
            }
            KeyCode::End => {
                self.selected = vm.sessions.last().map(|s| s.id);
                Action::Redraw
            }
            _ => Action::Nothing,
        }
    }

    fn step(&mut self, vm: &ViewModel, by: isize) -> Action {
        let Some(i) = self.selected_index(vm) else {
            return Action::Nothing;
        };
        let j = i.saturating_add_signed(by).min(vm.sessions.len() - 1);
        // Back on the first row: follow the newest session again.
        self.selected = if j == 0 {
            None
        } else {
            Some(vm.sessions[j].id)
        };
        Action::Redraw
    }
}
