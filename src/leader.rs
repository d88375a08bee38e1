//! Leader election through a Lease: only the instance holding it reconciles, so several
//! replicas of the controller never act at once.

use std::future::Future;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tracing::info;

/// Lease timings: a dead leader is replaced within `DURATION` seconds.
pub const DURATION: u64 = 15;
pub const GRACE: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader Lease {0}; stopping so a new instance can take over cleanly")]
    Lost(String),
}

/// How the controller process stopped.
pub enum Outcome {
    /// Asked to stop (SIGTERM / Ctrl-C).
    Stopped,
}

/// Waits for the Lease `namespace/name`, then runs `work` until `stop` resolves or the Lease
/// is lost. `work` receives a future that resolves when it must stop.
pub async fn run_as_leader<W, WF>(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    stop: impl Future<Output = ()> + Send + 'static,
    work: W,
) -> Result<Outcome, LeaderError>
where
    W: FnOnce(tokio::sync::oneshot::Receiver<()>) -> WF,
    WF: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_parameters(
            LeaseParams::new(identity, DURATION, GRACE).with_field_manager("sluice.dev/leader"),
        )
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    let mut stop = Box::pin(stop);
    info!(lease = %format!("{namespace}/{name}"), %identity, "waiting to lead");
    while !*leading.borrow_and_update() {
        tokio::select! {
            changed = leading.changed() => {
                if changed.is_err() {
                    return Err(LeaderError::Lost(format!("{namespace}/{name}")));
                }
            }
            _ = &mut stop => {
                drop(leading);
                let _ = task.await;
                return Ok(Outcome::Stopped);
            }
        }
    }
    info!(lease = %format!("{namespace}/{name}"), %identity, "leading");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let worker = work(rx);
    tokio::pin!(worker);
    let outcome = loop {
        tokio::select! {
            _ = &mut worker => break Ok(Outcome::Stopped),
            changed = leading.changed() => {
                if changed.is_err() || !*leading.borrow_and_update() {
                    let _ = tx.send(());
                    worker.await;
                    break Err(LeaderError::Lost(format!("{namespace}/{name}")));
                }
            }
            _ = &mut stop => {
                let _ = tx.send(());
                worker.await;
                break Ok(Outcome::Stopped);
            }
        }
    };
    // Closing the channel releases the Lease, so a successor need not wait for it to expire.
    drop(leading);
    let _ = task.await;
    outcome
}
