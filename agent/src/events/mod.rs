//! The event model: from kernel records to sessions, pure and unit-tested (no root).
//!
//! `decode` validates ring-buffer bytes into typed events; `merge` puts the two rings'
//! events in time order; `session` (the tracker) turns forks, exits, counters and I/O
//! into trace records; `classify` names a fork from the child's title; `files` names the
//! files a session wrote; `timeline` and `hist` hold its series and histograms; `reap`
//! plans which kernel map entries may go; `hidden` tells the agent's own traced helper's
//! events from the servers'. Imports only `trace::schema` (the records it
//! makes) from the crate.
pub mod attrib;
pub mod classify;
pub mod decode;
pub mod files;
pub mod hidden;
pub mod hist;
pub mod latency;
pub mod merge;
pub mod projection;
pub mod reap;
pub mod session;
pub mod stall;
pub mod timeline;
