//! cowtrace: attribute Redis fork copy-on-write memory and save I/O, with eBPF.
//!
//! The pure modules (`classify`, `decode`, `session`, `timeline`, `record`, `reap`,
//! `procfs` parsers) hold every rule and are unit-tested without root. `loader`,
//! `runner` and `check` are the thin layers that touch the kernel.
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
pub mod runner;
pub mod session;
pub mod timeline;
pub mod trace;
