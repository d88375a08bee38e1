//! Per-object retry delays: exponential with jitter, capped, forgotten on success. A Rollout
//! whose reconcile keeps failing backs off towards the cap instead of retrying every few
//! seconds, and Rollouts failing together (an API server outage) spread their retries.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::Duration;

/// The first retry's delay.
pub const BASE: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
pub const CAP: Duration = Duration::from_secs(300);

/// The delay before retry number `attempt` (1 for the first), with `jitter` in `[0, 1)`:
/// half the exponential delay is fixed and half is spread, so retries never bunch up and
/// never come sooner than half the nominal delay.
pub fn delay(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let nominal = base.saturating_mul(1u32 << exp).min(cap);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    nominal / 2 + nominal.mul_f64(jitter / 2.0)
}

/// A random number in `[0, 1)`, from the standard library's randomly keyed hasher.
pub fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Consecutive failures per object key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before trying again.
    pub fn failed(&self, key: &str) -> Duration {
        let attempt = match self.failures.lock() {
            Ok(mut m) => {
                let n = m.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            // A poisoned lock only loses the count: retry as after a first failure.
            Err(_) => 1,
        };
        delay(attempt, BASE, CAP, random_unit())
    }

    /// Forgets the failures of `key` after a reconcile that worked.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_double_from_the_base_up_to_the_cap() {
        let at = |n| delay(n, BASE, CAP, 0.0);
        assert_eq!(at(1), Duration::from_millis(500));
        assert_eq!(at(2), Duration::from_secs(1));
        assert_eq!(at(3), Duration::from_secs(2));
        assert_eq!(at(10), Duration::from_secs(150));
        assert_eq!(at(1000), CAP / 2);
        assert_eq!(delay(1000, BASE, CAP, 0.999_999), CAP.mul_f64(0.999_999_5));
    }

    #[test]
    fn failures_count_per_object_and_success_forgets_them() {
        let b = Backoff::default();
        b.failed("ns/a");
        b.failed("ns/a");
        b.failed("ns/b");
        assert_eq!((b.failures("ns/a"), b.failures("ns/b")), (2, 1));
        b.succeeded("ns/a");
        assert_eq!((b.failures("ns/a"), b.failures("ns/b")), (0, 1));
        let d = b.failed("ns/a");
        assert!(d >= BASE / 2 && d < BASE, "{d:?}");
    }

    proptest! {
        #[test]
        fn a_delay_stays_between_half_the_nominal_and_the_cap(attempt in 0u32..u32::MAX, jitter in proptest::num::f64::ANY) {
            let d = delay(attempt, BASE, CAP, jitter);
            prop_assert!(d <= CAP);
            prop_assert!(d >= BASE / 2);
        }
    }
}
