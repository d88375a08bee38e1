//! Sluice's test harness: a real Kubernetes control plane on loopback, a node simulator that
//! plays the kubelet, a real Prometheus with a metrics endpoint the test controls (and an
//! authenticating TLS proxy in front of it), and helpers for integration tests.

pub mod argo;
pub mod authproxy;
pub mod bench;
pub mod browser;
pub mod certs;
pub mod controlplane;
pub mod dashboards;
pub mod demo;
pub mod flux;
pub mod gitserver;
pub mod harness;
pub mod history;
pub mod identity;
pub mod lab;
pub mod metricsrv;
pub mod nodesim;
pub mod prometheus;
pub mod promtext;
pub mod report;
pub mod routers;
pub mod shop;
pub mod stage;
pub mod trafficsim;

pub use harness::{TestEnv, wait_for};
