//! Sluice's test harness: a real Kubernetes control plane on loopback, a node simulator that
//! plays the kubelet, and helpers for integration tests.

pub mod certs;
pub mod controlplane;
pub mod harness;
pub mod nodesim;

pub use harness::{TestEnv, wait_for};
