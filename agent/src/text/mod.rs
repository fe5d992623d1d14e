//! Text for people, shared by the live view, the end-of-run summary and `report`:
//! units (`units`), bcc-style log2 histograms (`hist`), a session's exit in words
//! (`exit`), the diagnosis of a session (`diagnosis`), how sync calls are counted in
//! words (`sync`), what a session sent to replicas (`sent`), and an error with its causes on one line (`error`). A leaf: it imports
//! only the trace schema and `events::hist`, never the live view, the report or the
//! runner.
pub mod causes;
pub mod date;
pub mod diagnosis;
pub mod error;
pub mod exit;
pub mod hist;
pub mod kernel;
pub mod latency;
pub mod sent;
pub mod stall;
pub mod sync;
pub mod units;
