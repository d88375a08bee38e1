//! Analysis: AnalysisTemplates become AnalysisRuns, which measure metrics through providers
//! and reach a verdict the Rollout acts on.
//!
//! `condition` (CEL), `judge` (the run's state machine), `stats` (the statistics of the
//! `compare` provider: canary against stable) and `template` (merging templates and binding
//! arguments) are pure; `controller` is the AnalysisRun reconciler, the I/O edge.

pub mod backtest;
pub mod burn;
pub mod compare;
pub mod condition;
pub mod controller;
pub mod judge;
pub mod stats;
pub mod template;
pub mod value;
