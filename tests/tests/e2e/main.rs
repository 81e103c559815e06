//! End-to-end tests on the local AWS stack: one binary, a module per theme, so the
//! slow build links once and `cargo test` runs everything in one invocation.

mod agent_files;
mod agent_input;
mod agent_logrotate;
mod agent_metrics;
mod agent_torture;
mod aggregator_notify;
mod aggregator_rules;
mod demo;
mod logs_audit;
mod stack_faults;
mod stack_limits;
mod stack_services;
mod support;
