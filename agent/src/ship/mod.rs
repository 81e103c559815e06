//! Shipping events to CloudWatch Logs: batches within the API's limits, one request in
//! flight per stream, retries, and acknowledgements that move checkpoints.
//! **Invariant:** nothing here opens a log file.

pub mod batch;
pub mod manifest;
pub mod shipper;
pub mod sink;

#[cfg(test)]
pub mod fake;
