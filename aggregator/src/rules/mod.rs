//! Rule files: their model, their checks, and the pieces those need (statistics,
//! filter patterns, templates). No I/O beyond reading the files.

pub mod check;
pub mod model;
pub mod pattern;
pub mod statistic;
pub mod template;
