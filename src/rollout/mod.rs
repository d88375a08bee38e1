//! The Rollout controller: observe (I/O) → decide (pure) → apply (I/O), with the Rollout's
//! status as the only memory.

pub mod analysis;
pub mod apply;
pub mod bluegreen;
pub mod cache;
pub mod conditions;
pub mod controller;
pub mod decide;
pub mod hash;
pub mod observe;
pub mod refused;
pub mod replicas;
#[cfg(test)]
mod test_support;
pub mod validate;
