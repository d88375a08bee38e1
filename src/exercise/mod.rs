//! Rollback exercises (`RolloutExercise`): a deliberately faulty revision released through a
//! Rollout's own steps and analysis, to show that it is caught and rolled back in time.
//!
//! - `fault` (pure): the fault applied to the stable pod template.
//! - `check` (pure): the spec checked before anything starts, and what its schedule makes of
//!   now; `schedule` (pure): cron expressions, time zones and windows.
//! - `run` (pure): the exercise controller's decisions; `objectives` (pure): a run judged;
//!   `requests` (pure): the queries that count the faulty revision's requests.
//! - `controller` (I/O): reads the caches, counts requests in Prometheus, writes statuses.
//! - The Rollout controller releases the faulty revision while the Rollout's status names the
//!   exercise (`status.exercise`), never promotes it (the safety stop), and records when it
//!   went live, was aborted and was safe (`rollout::exercise`).

pub mod check;
pub mod controller;
pub mod fault;
pub mod objectives;
pub mod requests;
pub mod run;
pub mod schedule;
