//! Rule evaluation, in memory and without I/O: series states and their transitions.
//! CloudWatch is read elsewhere; what it returned is handed in here.

pub mod evaluate;
pub mod state;
