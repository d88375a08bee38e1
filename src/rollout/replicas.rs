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
    let w = i64::from(weight.clamp(0, 100));
    clamp_i32((i64::from(replicas.max(0)) * w + 99) / 100)
}

/// Stable replicas for a traffic weight without a router: `ceil(replicas × (100 - weight) /
/// 100)`, so the stable keeps at least its share and any weight below 100 keeps one stable pod.
/// With the canary's count also rounded up, the two may add up to one pod more than
/// `replicas`; [`rounding_surge`] allows that pod (Argo Rollouts surges the same way).
pub fn stable_replicas(replicas: i32, weight: i32) -> i32 {
    canary_replicas(replicas, 100 - weight.clamp(0, 100))
}

/// The extra pod both round-ups may need: 1 when the targets add up to more than `replicas`.
pub fn rounding_surge(replicas: i32, targets: Targets) -> i32 {
    let sum = i64::from(targets.new) + i64::from(targets.stable);
    clamp_i32((sum - i64::from(replicas)).clamp(0, 1))
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// The most pods a release may run at once: `replicas + maxSurge`, saturating.
pub fn ceiling(replicas: i32, limits: Limits) -> i32 {
    replicas.max(0).saturating_add(limits.max_surge.max(0))
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
/// When the total is above the ceiling (`replicas` was lowered mid-release), it comes back
/// under it in the same move: unavailable pods first, then available ones down to the floor.
pub fn next_scale(replicas: i32, limits: Limits, cur: Counts, targets: Targets) -> Scale {
    let replicas = replicas.max(0);
    let ceiling = ceiling(replicas, limits);
    let cur = Counts {
        new: sane(cur.new),
        stable: sane(cur.stable),
        other: sane(cur.other),
    };
    let targets = Targets {
        new: targets.new.clamp(0, replicas),
        stable: targets.stable.clamp(0, replicas),
    };
    let mut total = i64::from(cur.new.replicas)
        + i64::from(cur.stable.replicas)
        + i64::from(cur.other.replicas);
    let mut up = |current: i32, target: i32| -> i32 {
        if target <= current {
            return current;
        }
        let room = (i64::from(ceiling) - total).max(0);
        let step = i64::from(target - current).min(room);
        total += step;
        current + step as i32
    };
    let new_up = up(cur.new.replicas, targets.new);
    let stable_up = up(cur.stable.replicas, targets.stable);

    let floor = (replicas - limits.max_unavailable.max(0)).max(0);
    let mut available = cur
        .new
        .available
        .saturating_add(cur.stable.available)
        .saturating_add(cur.other.available);
    let stable_g = Group {
        replicas: stable_up,
        ..cur.stable
    };
    let new_g = Group {
        replicas: new_up,
        ..cur.new
    };
    let other = scale_down(cur.other, 0, &mut available, floor);
    let stable = scale_down(stable_g, targets.stable, &mut available, floor);
    let new = scale_down(new_g, targets.new, &mut available, floor);
    let mut s = Scale { new, stable, other };
    let groups = [cur.other, stable_g, new_g];
    trim_to_ceiling(&mut s, groups, ceiling, available, floor);
    s
}

/// A group as the arithmetic expects it: no negative counts, no more available than desired.
fn sane(g: Group) -> Group {
    let replicas = g.replicas.max(0);
    Group {
        replicas,
        available: g.available.clamp(0, replicas),
    }
}

/// Brings the total down to `ceiling` when it is above it: first the unavailable pods each
/// group still has (older revisions, then the stable, then the new one), then available ones
/// down to the availability floor. At or below the ceiling it changes nothing.
fn trim_to_ceiling(
    s: &mut Scale,
    groups: [Group; 3],
    ceiling: i32,
    mut available: i32,
    floor: i32,
) {
    let total = i64::from(s.new) + i64::from(s.stable) + i64::from(s.other);
    let mut excess = total - i64::from(ceiling);
    if excess <= 0 {
        return;
    }
    type Slot = fn(&mut Scale) -> &mut i32;
    let slots: [Slot; 3] = [|s| &mut s.other, |s| &mut s.stable, |s| &mut s.new];
    for (slot, g) in slots.iter().zip(groups) {
        let n = slot(s);
        let unavailable = i64::from(*n - g.available.min(*n));
        let take = unavailable.min(excess);
        *n -= take as i32;
        excess -= take;
    }
    for (slot, g) in slots.iter().zip(groups) {
        let n = slot(s);
        let budget = i64::from((available - floor).max(0));
        let take = i64::from(g.available.min(*n))
            .min(budget)
            .min(excess.max(0));
        *n -= take as i32;
        available -= take as i32;
        excess -= take;
    }
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
    fn basic_canary_targets_keep_the_stable_at_its_share() {
        // (replicas, weight) -> (canary, stable, extra pod): Argo Rollouts' counts.
        let table = [
            (1, 25, 1, 1, 1),
            (1, 50, 1, 1, 1),
            (3, 20, 1, 3, 1),
            (2, 10, 1, 2, 1),
            (4, 25, 1, 3, 0),
            (4, 50, 2, 2, 0),
            (10, 30, 3, 7, 0),
            (5, 0, 0, 5, 0),
            (5, 100, 5, 0, 0),
        ];
        for (replicas, weight, canary, stable, extra) in table {
            let t = Targets {
                new: canary_replicas(replicas, weight),
                stable: stable_replicas(replicas, weight),
            };
            assert_eq!(
                (t.new, t.stable, rounding_surge(replicas, t)),
                (canary, stable, extra),
                "{replicas} replicas at {weight}%"
            );
        }
    }

    #[test]
    fn one_replica_at_25_percent_surges_the_canary_and_keeps_the_stable() {
        let t = Targets {
            new: canary_replicas(1, 25),
            stable: stable_replicas(1, 25),
        };
        let limits = Limits {
            max_surge: 1 + rounding_surge(1, t),
            max_unavailable: 0,
        };
        let mut c = Counts {
            stable: g(1, 1),
            ..Default::default()
        };
        for _ in 0..4 {
            let s = next_scale(1, limits, c, t);
            assert_eq!(s.stable, 1, "the stable stays at 1: {s:?}");
            c = Counts {
                new: g(s.new, s.new),
                stable: g(s.stable, s.stable),
                other: g(s.other, s.other),
            };
        }
        assert_eq!(c.new.replicas, 1);
    }

    #[test]
    fn lowering_replicas_mid_release_comes_back_under_the_ceiling() {
        // 8 -> 4 replicas, maxSurge 2: unready new pods and a full stable must not stay at 8.
        let limits = Limits {
            max_surge: 2,
            max_unavailable: 0,
        };
        let table = [
            (g(4, 0), g(4, 4), g(0, 0)),
            (g(2, 0), g(6, 6), g(0, 0)),
            (g(4, 0), g(2, 2), g(2, 2)),
            (g(3, 1), g(5, 5), g(0, 0)),
        ];
        for (new, stable, other) in table {
            let cur = Counts { new, stable, other };
            let s = next_scale(4, limits, cur, Targets { new: 2, stable: 2 });
            assert!(s.new + s.stable + s.other <= 6, "{cur:?} -> {s:?}");
            let kept = s.stable.min(stable.available)
                + s.new.min(new.available)
                + s.other.min(other.available);
            assert!(
                kept >= 4,
                "availability kept at the floor: {cur:?} -> {s:?}"
            );
        }
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
            // The real invariant: whatever the ReplicaSets hold now (even after `replicas` was
            // lowered mid-release), one move leaves at most `replicas + maxSurge` pods.
            let s = next_scale(replicas, limits, cur, targets);
            let after = s.new + s.stable + s.other;
            prop_assert!(after <= replicas + limits.max_surge, "{cur:?} -> {s:?}");
        }

        #[test]
        fn extreme_numbers_neither_panic_nor_wrap(
            replicas in prop_oneof![0..5i32, (i32::MAX - 5)..=i32::MAX],
            surge in prop_oneof![0..5i32, (i32::MAX - 5)..=i32::MAX],
            unavail in prop_oneof![0..5i32, (i32::MAX - 5)..=i32::MAX],
            sizes in proptest::array::uniform6(prop_oneof![0..5i32, (i32::MAX - 5)..=i32::MAX]),
            weight in -5..200i32,
        ) {
            let limits = Limits { max_surge: surge, max_unavailable: unavail };
            let cur = Counts {
                new: g(sizes[0], sizes[1]),
                stable: g(sizes[2], sizes[3]),
                other: g(sizes[4], sizes[5]),
            };
            let targets = Targets {
                new: canary_replicas(replicas, weight),
                stable: stable_replicas(replicas, weight),
            };
            let s = next_scale(replicas, limits, cur, targets);
            prop_assert!(s.new >= 0 && s.stable >= 0 && s.other >= 0, "{s:?}");
            let after = i64::from(s.new) + i64::from(s.stable) + i64::from(s.other);
            let before = i64::from(cur.new.replicas.max(0))
                + i64::from(cur.stable.replicas.max(0))
                + i64::from(cur.other.replicas.max(0));
            prop_assert!(after <= before.max(i64::from(ceiling(replicas, limits))), "{cur:?} -> {s:?}");
            prop_assert!(targets.new <= replicas.max(0) && targets.stable <= replicas.max(0));
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
