//! The Rollout controller: observe (I/O) → decide (pure) → apply (I/O), with the Rollout's
//! status as the only memory.

pub mod analysis;
pub mod apply;
mod basic;
pub mod bluegreen;
pub mod cache;
pub mod cached;
mod canary;
pub mod conditions;
pub mod controller;
pub mod decide;
mod exercise;
pub mod hash;
pub mod observe;
pub mod pods;
pub mod refused;
mod release;
pub mod replicas;
mod routed;
mod status;
#[cfg(test)]
pub(crate) mod test_support;
pub mod validate;
