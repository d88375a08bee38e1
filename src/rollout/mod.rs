//! The Rollout controller: observe (I/O) → decide (pure) → apply (I/O), with the Rollout's
//! status as the only memory.

pub mod conditions;
pub mod decide;
pub mod hash;
pub mod observe;
pub mod replicas;
pub mod validate;
