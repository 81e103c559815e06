//! Rule files: their model, their checks, and the pieces those need (statistics,
//! filter patterns, templates). No I/O beyond reading the files.

/// A value in a rule file that is refused; the message names it and says what is
/// expected. `check.rs` locates it at the key it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

pub mod check;
pub mod model;
pub mod pattern;
pub mod statistic;
pub mod template;
