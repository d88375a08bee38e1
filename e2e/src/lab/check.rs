//! The end states a lab accepts, and what is missing from one, pure.

use super::facts::Facts;

/// How a lab may end.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// The release was aborted for `cause` (`sluice_rollout_aborts_total`'s label) and the
    /// Rollout's message names each of `words`: Degraded, the old revision still stable with
    /// all the traffic, the new revision's pods gone.
    RolledBack {
        cause: &'static str,
        words: Vec<String>,
    },
    /// The template went back to the old revision (`kubectl sluice undo`): Healthy on it, all
    /// traffic on it, the new revision's pods gone. Nothing but a person aborted.
    Undone,
    /// The new revision became stable: Healthy, all traffic on it, the old pods gone, no
    /// abort.
    Promoted,
}

impl End {
    pub fn describe(&self) -> String {
        match self {
            End::RolledBack { cause, .. } => format!("rolled back (abort cause {cause})"),
            End::Undone => "back on the old revision through undo".into(),
            End::Promoted => "promoted".into(),
        }
    }
}

/// What is missing for `f` to be `end`; empty when it is. `old` and `new` are the revisions
/// (pod-template hashes) the lab started from and released.
pub fn missing(end: &End, f: &Facts, old: &str, new: &str) -> Vec<String> {
    let mut out = match end {
        End::RolledBack { cause, words } => rolled_back(f, cause, words),
        End::Undone => undone(f, old),
        End::Promoted => promoted(f, new),
    };
    let v = &f.view;
    if matches!(end, End::RolledBack { .. } | End::Undone) {
        need(
            &mut out,
            v.stable == old,
            format!("the stable revision is {}, not {old}", v.stable),
        );
        need(
            &mut out,
            gone(f.new_rs),
            format!("{} pod(s) of the new revision still there", pods(f.new_rs)),
        );
    }
    need(
        &mut out,
        f.weights == (100, 0),
        format!(
            "the VirtualService sends {}% to the canary, not 0",
            f.weights.1
        ),
    );
    out
}

fn need(out: &mut Vec<String>, ok: bool, what: String) {
    if !ok {
        out.push(what);
    }
}

/// A ReplicaSet (`spec.replicas`, pods) scaled to zero with no pod left, or none at all.
fn gone(rs: Option<(i32, i32)>) -> bool {
    rs.is_none_or(|(spec, pods)| spec == 0 && pods == 0)
}

fn pods(rs: Option<(i32, i32)>) -> i32 {
    rs.map_or(0, |(_, pods)| pods)
}

fn rolled_back(f: &Facts, cause: &str, words: &[String]) -> Vec<String> {
    let v = &f.view;
    let mut out = Vec::new();
    need(&mut out, v.abort, "the release is not aborted".into());
    need(
        &mut out,
        v.phase == "Degraded",
        format!("the phase is {:?}, not Degraded", v.phase),
    );
    let counted = f.abort_causes();
    need(
        &mut out,
        counted == [cause.to_string()],
        if counted.is_empty() {
            format!("no abort counted yet (one for {cause} expected)")
        } else {
            format!("Sluice counted aborts for {counted:?}, not one for {cause}")
        },
    );
    for w in words {
        need(
            &mut out,
            v.message.contains(w.as_str()),
            format!("the Rollout's message does not name {w:?}: {:?}", v.message),
        );
    }
    out
}

fn undone(f: &Facts, old: &str) -> Vec<String> {
    let v = &f.view;
    let mut out = Vec::new();
    need(&mut out, !v.abort, "the release is still aborted".into());
    need(
        &mut out,
        v.current == old,
        format!("the template is revision {}, not {old}", v.current),
    );
    need(
        &mut out,
        v.phase == "Healthy",
        format!("the phase is {:?}, not Healthy", v.phase),
    );
    let automatic: Vec<String> = f
        .abort_causes()
        .into_iter()
        .filter(|c| c != "Request")
        .collect();
    need(
        &mut out,
        automatic.is_empty(),
        format!("Sluice aborted on its own ({automatic:?}), with no analysis to do so"),
    );
    out
}

fn promoted(f: &Facts, new: &str) -> Vec<String> {
    let v = &f.view;
    let mut out = Vec::new();
    need(
        &mut out,
        v.stable == new,
        format!("the stable revision is {}, not {new}", v.stable),
    );
    need(
        &mut out,
        v.phase == "Healthy",
        format!("the phase is {:?}, not Healthy", v.phase),
    );
    need(
        &mut out,
        f.abort_causes().is_empty(),
        format!("the release was aborted ({:?})", f.abort_causes()),
    );
    need(
        &mut out,
        gone(f.old_rs),
        format!("{} pod(s) of the old revision still there", pods(f.old_rs)),
    );
    out
}

/// Says what the end state still lacks, each time that changes.
#[derive(Default)]
pub struct Lacking {
    last: Vec<String>,
}

impl Lacking {
    /// Prints `missing` at `t` when it differs from the last list printed.
    pub fn report(&mut self, t: f64, missing: &[String]) {
        if missing != self.last.as_slice() && !missing.is_empty() {
            println!("[{t:6.1}s] still to come: {}", missing.join("; "));
        }
        self.last = missing.to_vec();
    }
}

/// An outcome that no waiting mends: the bad release became stable, or Sluice aborted for
/// a cause the lab does not accept.
pub fn ruined(f: &Facts, old: &str, causes: &[&str], may_promote: bool) -> Option<String> {
    let v = &f.view;
    if !may_promote && !v.stable.is_empty() && v.stable != old {
        return Some(format!(
            "revision {} became stable: the faulty release was promoted",
            v.stable
        ));
    }
    let wrong: Vec<String> = f
        .abort_causes()
        .into_iter()
        .filter(|c| !causes.contains(&c.as_str()))
        .collect();
    (!wrong.is_empty()).then(|| {
        format!(
            "the release was aborted for {wrong:?} (expected {causes:?}): {}",
            v.message
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::shop::View;

    fn rolled_back() -> Facts {
        Facts {
            view: View {
                phase: "Degraded".into(),
                message: "RolloutAborted: revision new cannot run: pod p container shop: CrashLoopBackOff".into(),
                abort: true,
                stable: "old".into(),
                current: "new".into(),
                ..View::default()
            },
            weights: (100, 0),
            new_rs: Some((0, 0)),
            old_rs: Some((4, 4)),
            aborts: BTreeMap::from([("PodsFailing".to_string(), 1.0)]),
            ..Facts::default()
        }
    }

    fn crashloop() -> End {
        End::RolledBack {
            cause: "PodsFailing",
            words: vec!["CrashLoopBackOff".into()],
        }
    }

    #[test]
    fn a_rollback_for_the_expected_cause_is_complete() {
        assert_eq!(
            missing(&crashloop(), &rolled_back(), "old", "new"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_rollback_for_another_cause_is_not_the_answer() {
        let mut f = rolled_back();
        f.aborts = BTreeMap::from([("ProgressDeadline".to_string(), 1.0)]);
        let m = missing(&crashloop(), &f, "old", "new");
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("ProgressDeadline"), "{m:?}");
        assert!(ruined(&f, "old", &["PodsFailing"], false).is_some());
    }

    #[test]
    fn pods_left_or_traffic_on_the_canary_are_missing() {
        let mut f = rolled_back();
        f.new_rs = Some((0, 1));
        f.weights = (75, 25);
        let m = missing(&crashloop(), &f, "old", "new");
        assert_eq!(m.len(), 2, "{m:?}");
    }

    #[test]
    fn the_message_must_name_the_diagnosis() {
        let end = End::RolledBack {
            cause: "PodsFailing",
            words: vec!["ImagePullBackOff".into()],
        };
        assert_eq!(missing(&end, &rolled_back(), "old", "new").len(), 1);
    }

    #[test]
    fn undo_is_healthy_on_the_old_template_with_no_automatic_abort() {
        let mut f = rolled_back();
        f.view.abort = false;
        f.view.phase = "Healthy".into();
        f.view.current = "old".into();
        f.aborts = BTreeMap::from([("Request".to_string(), 1.0)]);
        assert_eq!(
            missing(&End::Undone, &f, "old", "new"),
            Vec::<String>::new()
        );
        f.aborts = BTreeMap::from([("AnalysisFailed".to_string(), 1.0)]);
        assert_eq!(missing(&End::Undone, &f, "old", "new").len(), 1);
    }

    #[test]
    fn promoted_means_the_new_revision_is_stable_and_the_old_pods_are_gone() {
        let f = Facts {
            view: View {
                phase: "Healthy".into(),
                stable: "new".into(),
                current: "new".into(),
                ..View::default()
            },
            weights: (100, 0),
            old_rs: Some((0, 0)),
            ..Facts::default()
        };
        assert_eq!(
            missing(&End::Promoted, &f, "old", "new"),
            Vec::<String>::new()
        );
        assert!(ruined(&f, "old", &[], false).is_some());
        assert!(ruined(&f, "old", &[], true).is_none());
    }
}
