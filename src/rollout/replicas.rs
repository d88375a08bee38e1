//! Replica arithmetic for a release: how far the ReplicaSets may move in one reconcile without
//! exceeding `replicas + maxSurge` pods or dropping below `replicas - maxUnavailable` available
//! ones. Pure; the invariants are property-tested.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("{field}: {value:?} is neither a non-negative count nor a percentage such as \"25%\"")]
    Malformed { field: &'static str, value: String },
}

/// A count or percentage of `total`; percentages round up (surge) or down (unavailable), as
/// Kubernetes Deployments do.
pub fn resolve(
    field: &'static str,
    value: &IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, ReplicaError> {
    let bad = || ReplicaError::Malformed {
        field,
        value: format!("{value:?}"),
    };
    match value {
        IntOrString::Int(i) if *i >= 0 => Ok(*i),
        IntOrString::Int(_) => Err(bad()),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(bad)?;
            if pct < 0 {
                return Err(bad());
            }
            let scaled = i64::from(total) * pct;
            let v = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            i32::try_from(v).map_err(|_| bad())
        }
    }
}

/// Resolved surge and unavailability limits. Both zero would forbid any move, so then one
/// pod may be unavailable, as Deployments do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_surge: i32,
    pub max_unavailable: i32,
}

impl Limits {
    pub fn resolve(
        replicas: i32,
        max_surge: &IntOrString,
        max_unavailable: &IntOrString,
    ) -> Result<Self, ReplicaError> {
        let max_surge = resolve("maxSurge", max_surge, replicas, true)?;
        let mut max_unavailable = resolve("maxUnavailable", max_unavailable, replicas, false)?;
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Ok(Limits {
            max_surge,
            max_unavailable,
        })
    }
}

/// Desired (spec) and available pods of one group of ReplicaSets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Group {
    pub replicas: i32,
    pub available: i32,
}

/// The three groups of a release: the new revision, the stable one, and any older revisions
/// still holding pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub new: Group,
    pub stable: Group,
    pub other: Group,
}

/// Where the release wants the new and stable revisions to be (older ones go to zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub new: i32,
    pub stable: i32,
}

/// Spec replicas for the new, stable and other groups after one reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub new: i32,
    pub stable: i32,
    pub other: i32,
}

/// Canary replicas for a traffic weight: `ceil(replicas × weight / 100)`, so any non-zero weight
/// gets at least one pod.
pub fn canary_replicas(replicas: i32, weight: i32) -> i32 {
    let w = weight.clamp(0, 100);
    ((i64::from(replicas) * i64::from(w) + 99) / 100) as i32
}

/// Scale-downs take unavailable pods first (the ReplicaSet controller deletes not-ready pods
/// before ready ones), then only as many available pods as the floor allows.
fn scale_down(g: Group, target: i32, available: &mut i32, floor: i32) -> i32 {
    let target = target.max(0);
    if target >= g.replicas {
        return g.replicas;
    }
    let want = g.replicas - target;
    let unavailable = (g.replicas - g.available).max(0);
    let free = want.min(unavailable);
    let budget = (*available - floor).max(0);
    let taken = (want - free).min(budget);
    *available -= taken;
    g.replicas - free - taken
}

/// One move towards `targets` within the limits: scale up the new revision, then the stable,
/// while the total stays within `replicas + maxSurge`; then scale down older revisions, the
/// stable and the new one while availability stays at `replicas - maxUnavailable` or more.
pub fn next_scale(replicas: i32, limits: Limits, cur: Counts, targets: Targets) -> Scale {
    let ceiling = replicas + limits.max_surge;
    let mut total = cur.new.replicas + cur.stable.replicas + cur.other.replicas;
    let mut up = |current: i32, target: i32| -> i32 {
        if target <= current {
            return current;
        }
        let step = (target - current).min((ceiling - total).max(0));
        total += step;
        current + step
    };
    let new_up = up(cur.new.replicas, targets.new);
    let stable_up = up(cur.stable.replicas, targets.stable);

    let floor = (replicas - limits.max_unavailable).max(0);
    let mut available = cur.new.available + cur.stable.available + cur.other.available;
    let other = scale_down(cur.other, 0, &mut available, floor);
    let stable = scale_down(
        Group {
            replicas: stable_up,
            ..cur.stable
        },
        targets.stable,
        &mut available,
        floor,
    );
    let new = scale_down(
        Group {
            replicas: new_up,
            ..cur.new
        },
        targets.new,
        &mut available,
        floor,
    );
    Scale { new, stable, other }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(replicas: i32, available: i32) -> Group {
        Group {
            replicas,
            available,
        }
    }

    #[test]
    fn percentages_round_the_way_deployments_do() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(resolve("maxSurge", &pct("25%"), 10, true), Ok(3));
        assert_eq!(resolve("maxUnavailable", &pct("25%"), 10, false), Ok(2));
        assert_eq!(resolve("maxSurge", &IntOrString::Int(2), 10, true), Ok(2));
        assert!(resolve("maxSurge", &pct("lots"), 10, true).is_err());
        assert!(resolve("maxSurge", &IntOrString::Int(-1), 10, true).is_err());
    }

    #[test]
    fn both_limits_zero_allows_one_unavailable() {
        let l = Limits::resolve(4, &IntOrString::Int(0), &IntOrString::String("0%".into()))
            .expect("limits");
        assert_eq!(
            l,
            Limits {
                max_surge: 0,
                max_unavailable: 1
            }
        );
    }

    #[test]
    fn canary_replicas_round_up() {
        assert_eq!(canary_replicas(10, 25), 3);
        assert_eq!(canary_replicas(4, 1), 1);
        assert_eq!(canary_replicas(4, 0), 0);
        assert_eq!(canary_replicas(4, 100), 4);
    }

    #[test]
    fn surge_first_then_scale_down_as_new_pods_become_available() {
        let limits = Limits {
            max_surge: 1,
            max_unavailable: 0,
        };
        let start = Counts {
            new: g(0, 0),
            stable: g(4, 4),
            other: g(0, 0),
        };
        let s = next_scale(4, limits, start, Targets { new: 2, stable: 2 });
        assert_eq!(
            s,
            Scale {
                new: 1,
                stable: 4,
                other: 0
            },
            "one surge pod, nothing removed yet"
        );
        let s = next_scale(
            4,
            limits,
            Counts {
                new: g(1, 1),
                ..start
            },
            Targets { new: 2, stable: 2 },
        );
        assert_eq!(
            s,
            Scale {
                new: 1,
                stable: 3,
                other: 0
            },
            "a ready canary pod frees one stable pod"
        );
    }

    #[test]
    fn unavailable_pods_are_removed_freely() {
        let limits = Limits {
            max_surge: 0,
            max_unavailable: 0,
        };
        let cur = Counts {
            new: g(2, 0),
            stable: g(4, 4),
            other: g(0, 0),
        };
        let s = next_scale(4, limits, cur, Targets { new: 0, stable: 4 });
        assert_eq!(s.new, 0);
        assert_eq!(s.stable, 4);
    }

    fn counts() -> impl Strategy<Value = (i32, Limits, Counts, Targets)> {
        (1i32..20, 0i32..5, 0i32..5).prop_flat_map(|(replicas, surge, unavail)| {
            let limits = Limits {
                max_surge: surge,
                max_unavailable: if surge == 0 && unavail == 0 {
                    1
                } else {
                    unavail
                },
            };
            let grp = (0..=replicas + surge)
                .prop_flat_map(|r| (Just(r), 0..=r))
                .prop_map(|(r, a)| g(r, a));
            (
                Just(replicas),
                Just(limits),
                grp.clone(),
                grp.clone(),
                grp,
                0..=replicas,
            )
                .prop_map(|(replicas, limits, new, stable, other, target_new)| {
                    (
                        replicas,
                        limits,
                        Counts { new, stable, other },
                        Targets {
                            new: target_new,
                            stable: replicas - target_new,
                        },
                    )
                })
        })
    }

    proptest! {
        #[test]
        fn never_exceeds_the_surge_ceiling((replicas, limits, cur, targets) in counts()) {
            let s = next_scale(replicas, limits, cur, targets);
            let before = cur.new.replicas + cur.stable.replicas + cur.other.replicas;
            let after = s.new + s.stable + s.other;
            prop_assert!(after <= before.max(replicas + limits.max_surge));
        }

        #[test]
        fn never_drops_availability_below_the_floor((replicas, limits, cur, targets) in counts()) {
            let s = next_scale(replicas, limits, cur, targets);
            let floor = replicas - limits.max_unavailable;
            // Pods removed from a group are its unavailable ones first.
            let kept = |grp: Group, r: i32| grp.available.min(r);
            let before = cur.new.available + cur.stable.available + cur.other.available;
            let after = kept(cur.new, s.new) + kept(cur.stable, s.stable) + kept(cur.other, s.other);
            prop_assert!(after >= before.min(floor), "available {before} -> {after}, floor {floor}");
        }

        #[test]
        fn reaches_the_targets_when_pods_become_ready((replicas, limits, cur, targets) in counts()) {
            let mut c = cur;
            for _ in 0..(4 * (replicas + 5)) {
                let s = next_scale(replicas, limits, c, targets);
                c = Counts { new: g(s.new, s.new), stable: g(s.stable, s.stable), other: g(s.other, s.other) };
            }
            prop_assert_eq!((c.new.replicas, c.stable.replicas, c.other.replicas), (targets.new, targets.stable, 0));
        }
    }
}
