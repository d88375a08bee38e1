//! The `sluice.dev/v1alpha1` API: CRD types, defaults and constants.

pub mod analysis;
pub mod constants;
pub mod crds;
pub mod duration;
pub mod exercise;
pub mod rollout;
mod schema;

pub use analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
pub use exercise::RolloutExercise;
pub use rollout::Rollout;
