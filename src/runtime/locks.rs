//! One holder at a time per object key, across the tasks that reconcile it: the controller's
//! queue already runs one reconcile per object, and the urgent lane (a failed verdict's abort,
//! run at once instead of waiting its turn in that queue) must not run beside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Per-key async locks; a key's lock is forgotten when no one holds or waits for it.
#[derive(Default)]
pub struct KeyLocks {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Holds a key's lock until dropped.
pub struct KeyGuard<'a> {
    owner: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    /// Waits until no one else holds `key`, then holds it.
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyGuard {
            owner: self,
            key: key.to_string(),
            guard: Some(guard),
        }
    }

    /// Keys with a lock held or awaited.
    pub fn len(&self) -> usize {
        self.locks.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.owner.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it: no one holds or awaits this key any more.
        if map
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_per_key_and_keys_are_forgotten() {
        let locks = Arc::new(KeyLocks::default());
        let a = locks.lock("ns/a").await;
        // Another key is free.
        let b = locks.lock("ns/b").await;
        assert_eq!(locks.len(), 2);
        drop(b);
        assert_eq!(locks.len(), 1);
        // The same key waits until the first holder lets go.
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("ns/a").await;
            let _ = tx.send(());
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "a second holder got in");
        drop(a);
        waiter.await.expect("waiter");
        assert!(locks.is_empty());
    }
}
