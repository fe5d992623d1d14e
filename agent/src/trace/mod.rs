//! The trace: the JSON Lines format of `record` (docs/trace-format.md).
//!
//! `schema` holds one serde type per line type, shared by the writer and the reader;
//! `writer` writes lines to a file or stdout; `reader` reads and validates them with
//! bounded memory. This folder imports nothing else from the crate.
pub mod reader;
pub mod schema;
pub mod writer;

pub use reader::{Item, LineProblem, ReadError, TraceReader};
pub use schema::Record;
pub use writer::{TraceError, TraceWriter};
