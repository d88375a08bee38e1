//! Sluice's own status writes, remembered until the watch cache has seen them.
//!
//! Reconciles read the Rollout from a watch cache. Right after Sluice replaces a Rollout's
//! status, a reconcile woken by something else (a ReplicaSet that Sluice just scaled, say) may
//! still find the version the write replaced in the cache. Deciding on it would repeat work
//! and end in a conflict on the next status write; instead that reconcile waits for the watch
//! to deliver Sluice's write, which wakes the Rollout again.

use std::collections::HashMap;
use std::sync::Mutex;

/// The resourceVersion each Rollout's latest status write replaced, by `namespace/name`.
#[derive(Debug, Default)]
pub struct OwnWrites(Mutex<HashMap<String, String>>);

impl OwnWrites {
    /// Records that Sluice replaced version `replaced` of Rollout `key`.
    pub fn wrote(&self, key: &str, replaced: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), replaced.to_string());
        }
    }

    /// True while the cached version `cached` is the one Sluice's own write replaced (the
    /// cache is behind); once the cache has moved on, the write is forgotten.
    pub fn cache_is_behind(&self, key: &str, cached: &str) -> bool {
        let Ok(mut m) = self.0.lock() else {
            return false;
        };
        match m.get(key) {
            Some(replaced) if replaced == cached => true,
            Some(_) => {
                m.remove(key);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_behind_until_it_shows_a_newer_version() {
        let w = OwnWrites::default();
        assert!(!w.cache_is_behind("ns/web", "10"), "nothing written yet");
        w.wrote("ns/web", "10");
        assert!(w.cache_is_behind("ns/web", "10"));
        assert!(!w.cache_is_behind("ns/other", "10"), "per Rollout");
        assert!(!w.cache_is_behind("ns/web", "11"), "the cache caught up");
        assert!(
            !w.cache_is_behind("ns/web", "10"),
            "and the write is forgotten"
        );
    }
}
