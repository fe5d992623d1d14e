//! The full-screen live view of `watch` on a terminal.
//!
//! - `model`: the [`model::ViewModel`] of one screen, built from the store (pure);
//! - `render`: draws a model (pure, tested with ratatui's `TestBackend`);
//! - `table`: the sessions table, one column list with a cell function, and its drawing
//!   (pure);
//! - `ui`: keys and selection (pure);
//! - `term`: raw mode, the alternate screen, key events and restoring the terminal.
pub mod model;
pub mod render;
pub mod table;
pub mod term;
pub mod ui;
