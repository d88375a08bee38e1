//! What every controller shares: the context of a reconcile, write counting, API calls under
//! a timeout, errors and the retry policy after one, per-object backoff, secondary indexes of
//! the watch caches, objects that do not read, Sluice's own status writes, and the
//! rate-limited client.
//!
//! Imports point one way: `api` <- the pure core (`rollout::decide` and its strategies,
//! `analysis::judge`, the traffic routers' edits) <- `runtime` <- the controllers
//! (`rollout::controller`, `analysis::controller`, `traffic::kube`) <- `main`. Nothing here
//! knows a Rollout's strategy or an analysis' metrics.

pub mod backoff;
pub mod calls;
pub mod context;
pub mod error;
pub mod events;
pub mod index;
pub mod listed;
pub mod lists;
pub mod locks;
pub mod malformed;
pub mod namespaces;
pub mod own_writes;
pub mod status;
pub mod throttle;
pub mod writes;
