//! Whether a watch has delivered its first full list, for any number of waiters at once.
//!
//! kube-runtime's `Store::wait_until_ready` signals through a oneshot channel, which keeps
//! the waker of the last task that polled it. With several tasks waiting at once (every
//! reconcile worker right after a restart, waiting for the pod list) one of them wakes when
//! the list is in and the others sleep until something else polls them: a timeout's deadline,
//! 30 s later. `rollout::cache`'s tests show it with ten waiters; in the benchmark, after a
//! restart, a task that waited on the Rollout cache beside the controller was never woken.
//! [`Listed`] is a `watch` channel, which wakes every waiter.
//!
//! The watch stream marks its cache listed when it has applied its first `InitDone` (see
//! `rollout::cache`): the store holds the whole list by then.

use kube::runtime::watcher;
use tokio::sync::watch;

/// The watch's side: marks its cache listed.
pub struct MarkListed(watch::Sender<bool>);

/// The readers' side: whether, or when, the cache has its first full list.
#[derive(Clone)]
pub struct Listed(watch::Receiver<bool>);

/// The watch ended (its stream was dropped) before its first full list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the watch ended before its first full list")]
pub struct Ended;

/// A cache not yet listed: its marking and its waiting sides.
pub fn listed() -> (MarkListed, Listed) {
    let (tx, rx) = watch::channel(false);
    (MarkListed(tx), Listed(rx))
}

impl MarkListed {
    /// The cache now holds a full list (every later list keeps it so).
    pub fn mark(&self) {
        self.0
            .send_if_modified(|listed| !std::mem::replace(listed, true));
    }

    /// Marks on the end of a list, once the store has applied it.
    pub fn saw<K>(&self, event: &Result<watcher::Event<K>, watcher::Error>) {
        if let Ok(watcher::Event::InitDone) = event {
            self.mark();
        }
    }
}

impl Listed {
    pub fn is_listed(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the cache holds its first full list; [`Ended`] when its watch stopped
    /// before.
    pub async fn wait(&self) -> Result<(), Ended> {
        let mut rx = self.0.clone();
        rx.wait_for(|listed| *listed)
            .await
            .map(|_| ())
            .map_err(|_| Ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_waiter_wakes_when_the_list_is_in() {
        let (mark, listed) = listed();
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let l = listed.clone();
                tokio::spawn(async move { l.wait().await })
            })
            .collect();
        // Every waiter is waiting (holds its receiver) before the list completes.
        tokio::time::timeout(Duration::from_secs(10), async {
            while mark.0.receiver_count() < 11 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("ten waiters waiting");
        assert!(!listed.is_listed());
        mark.saw::<k8s_openapi::api::core::v1::Pod>(&Ok(watcher::Event::Init));
        assert!(
            !listed.is_listed(),
            "a list that has only begun is not a list"
        );
        mark.saw::<k8s_openapi::api::core::v1::Pod>(&Ok(watcher::Event::InitDone));
        for w in waiters {
            let woke = tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .expect("every waiter wakes, not only the last to wait");
            assert_eq!(woke.expect("task"), Ok(()));
        }
        assert!(listed.is_listed());
    }

    #[tokio::test]
    async fn a_watch_that_ends_first_is_an_error_and_one_that_ends_after_is_not() {
        let (mark, waiting) = listed();
        drop(mark);
        assert_eq!(waiting.wait().await, Err(Ended));

        let (mark, waiting) = listed();
        mark.mark();
        drop(mark);
        assert_eq!(waiting.wait().await, Ok(()));
    }
}
