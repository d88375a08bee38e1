//! Sluice: progressive delivery for Kubernetes.
//!
//! The crate is a library with three binaries: `sluice` (the controller), `kubectl-sluice`
//! (the kubectl plugin) and `crdgen` (writes `crds/`).

pub mod analysis;
pub mod api;
pub mod cli;
pub mod exercise;
pub mod leader;
pub mod notify;
pub mod providers;
pub mod rollout;
pub mod runtime;
pub mod telemetry;
pub mod traffic;
