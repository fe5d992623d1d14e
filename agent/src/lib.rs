//! cowtrace: attribute Redis fork copy-on-write memory and save I/O, with eBPF.
//!
//! The layers, from the bottom up (each imports only from the ones above it in this
//! list; docs/architecture.md draws the data flow):
//! - `trace`: the JSON Lines schema, writer and reader.
//! - `events`: the pure event model (decoding, sessions, classification, files,
//!   timelines, histograms, reaping).
//! - `text`: units, histograms, exit wording and the diagnosis, as text.
//! - `procfs`: small readers of /proc and /sys.
//! - `live` (the `watch` lines, full-screen view and summary) and `report` (the offline
//!   retelling of a trace): pure, except `live::screen::term`, the terminal.
//! - `kernel`: the thin layer that loads, attaches and reads the BPF programs.
//! - `runner`: the event loop that moves data between the kernel and the pure modules.
//! - `cli`: the command line's definition and `--version`, for the binary and the
//!   generator of its man pages and completions.
//!
//! `build_info` (what the binary was built from) is a leaf, like `text`.
pub mod build_info;
pub mod cli;
pub mod events;
pub mod kernel;
pub mod live;
pub mod procfs;
pub mod report;
pub mod runner;
pub mod serve;
pub mod text;
pub mod trace;
