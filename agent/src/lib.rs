//! cowtrace: attribute Redis fork copy-on-write memory and save I/O, with eBPF.
//!
//! The pure modules (`classify`, `decode`, `session`, `timeline`, `record`, `reap`,
//! `procfs` parsers, `report`) hold every rule and are unit-tested without root. `loader`,
//! `runner` and `check` are the thin layers that touch the kernel. The live view of
//! `watch` (`view`) is pure too, except `view::term`, the thin layer over the terminal.
pub mod btf;
pub mod check;
pub mod classify;
pub mod decode;
pub mod diagnose;
pub mod files;
pub mod hist;
pub mod loader;
pub mod output;
pub mod privileges;
pub mod procfs;
pub mod reap;
pub mod record;
pub mod report;
pub mod runner;
pub mod session;
pub mod timeline;
pub mod trace;
pub mod view;
