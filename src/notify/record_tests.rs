use super::*;
use crate::api::rollout::NotifiedAnalysis;
use crate::rollout::decide::{AbortCause, EventType, PlannedEvent};

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn subs(pairs: &[(Trigger, &[&str])]) -> Subscriptions {
    pairs
        .iter()
        .map(|(t, r)| (*t, r.iter().map(|s| s.to_string()).collect()))
        .collect()
}

fn plan(phase: RolloutPhase, reasons: &[&'static str]) -> Plan {
    let mut p = Plan::default();
    p.status.phase = Some(phase);
    p.status.current_pod_hash = Some("v3".into());
    p.status.stable_rs = Some("v2".into());
    for r in reasons {
        p.events.push(PlannedEvent {
            type_: EventType::Normal,
            reason: r,
            message: format!("{r} happened"),
        });
    }
    p
}

fn triggers(p: &Plan) -> Vec<(String, String, Vec<String>)> {
    p.status
        .notifications
        .iter()
        .flat_map(|l| &l.records)
        .map(|r| (r.trigger.clone(), r.revision.clone(), r.pending.clone()))
        .collect()
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("a valid time")
}

#[test]
fn annotations_add_to_the_namespace_default_and_unknown_triggers_are_reported() {
    let default = subs(&[(Trigger::Aborted, &["oncall"])]);
    let a = annotations(&[
        (
            "notifications.sluice.dev/subscribe.on-aborted",
            "releases, oncall",
        ),
        ("notifications.sluice.dev/subscribe.on-promoted", "releases"),
        ("notifications.sluice.dev/subscribe.on-rollout-done", "x"),
        ("notifications.sluice.dev/subscribe.on-paused", " "),
        ("other", "y"),
    ]);
    let (s, unknown) = subscriptions(&a, Some(&default));
    assert_eq!(
        s,
        subs(&[
            (Trigger::Aborted, &["oncall", "releases"]),
            (Trigger::Promoted, &["releases"]),
        ])
    );
    assert_eq!(
        unknown,
        vec!["notifications.sluice.dev/subscribe.on-rollout-done"]
    );
    assert_eq!(
        subscriptions(&BTreeMap::new(), None).0,
        Subscriptions::new()
    );
}

#[test]
fn every_trigger_name_reads_back() {
    for t in Trigger::ALL {
        assert_eq!(Trigger::parse(t.name()), Some(t));
    }
    assert_eq!(Trigger::parse("aborted"), None);
}

#[test]
fn each_decision_is_recorded_for_its_receivers_only() {
    let s = subs(&[
        (Trigger::ReleaseStarted, &["slack"]),
        (Trigger::Paused, &["slack", "hook"]),
    ]);
    let mut p = plan(
        RolloutPhase::Paused,
        &[
            "RolloutStarted",
            "StepCompleted",
            "Paused",
            "ScalingReplicaSet",
        ],
    );
    record(&RolloutStatus::default(), &mut p, &s, now());
    assert_eq!(
        triggers(&p),
        vec![
            (
                "on-release-started".into(),
                "v3".into(),
                vec!["slack".into()]
            ),
            (
                "on-paused".into(),
                "v3".into(),
                vec!["hook".into(), "slack".into()]
            ),
        ]
    );
    let log = p.status.notifications.as_ref().expect("a log");
    assert_eq!(log.sequence, 2);
    assert_eq!(
        log.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(log.records[1].message, "Paused happened");
}

#[test]
fn nothing_is_recorded_without_receivers_except_an_abort() {
    let mut quiet = plan(RolloutPhase::Progressing, &["RolloutStarted", "Paused"]);
    record(
        &RolloutStatus::default(),
        &mut quiet,
        &Subscriptions::new(),
        now(),
    );
    assert_eq!(quiet.status.notifications, None);

    let mut aborted = plan(RolloutPhase::Degraded, &["RolloutAborted"]);
    aborted.aborted = Some(AbortCause::AnalysisFailed);
    aborted.analysis = Some(NotifiedAnalysis {
        run: "shop-v3-1-step-1".into(),
        metric: Some("success-rate".into()),
        value: Some("[0.62]".into()),
        condition: Some("successCondition: result[0] >= 0.95".into()),
    });
    record(
        &RolloutStatus::default(),
        &mut aborted,
        &Subscriptions::new(),
        now(),
    );
    let log = aborted.status.notifications.as_ref().expect("a log");
    assert_eq!(log.records.len(), 1);
    let r = &log.records[0];
    assert_eq!((r.trigger.as_str(), r.pending.len()), ("on-aborted", 0));
    assert_eq!(
        r.analysis.as_ref().and_then(|a| a.value.as_deref()),
        Some("[0.62]")
    );
}

#[test]
fn an_abort_event_without_an_abort_decided_now_is_not_an_abort() {
    // ProgressDeadlineExceeded is also told when the release is already aborted.
    let mut p = plan(RolloutPhase::Degraded, &["ProgressDeadlineExceeded"]);
    let s = subs(&[(Trigger::Aborted, &["oncall"])]);
    record(&RolloutStatus::default(), &mut p, &s, now());
    assert_eq!(triggers(&p), vec![]);
    p.aborted = Some(AbortCause::ProgressDeadline);
    record(&RolloutStatus::default(), &mut p, &s, now());
    assert_eq!(
        triggers(&p),
        vec![("on-aborted".into(), "v3".into(), vec!["oncall".into()])]
    );
}

#[test]
fn becoming_healthy_after_aborts_recovers_each_aborted_revision_once() {
    let s = subs(&[(Trigger::Recovered, &["oncall"])]);
    let mut status = RolloutStatus::default();
    for rev in ["v3", "v4", "v4"] {
        let mut p = plan(RolloutPhase::Degraded, &["RolloutAborted"]);
        p.status = RolloutStatus {
            current_pod_hash: Some(rev.into()),
            ..status.clone()
        };
        p.aborted = Some(AbortCause::Request);
        p.events.push(PlannedEvent {
            type_: EventType::Warning,
            reason: "RolloutAborted",
            message: "aborted".into(),
        });
        record(&status, &mut p, &s, now());
        status = p.status;
    }
    status.phase = Some(RolloutPhase::Degraded);
    let mut back = plan(RolloutPhase::Healthy, &["FastTrackRollback"]);
    back.status.notifications = status.notifications.clone();
    record(&status, &mut back, &s, now());
    let recovered: Vec<_> = triggers(&back)
        .into_iter()
        .filter(|(t, ..)| t == "on-recovered")
        .collect();
    assert_eq!(
        recovered,
        vec![
            ("on-recovered".into(), "v3".into(), vec!["oncall".into()]),
            ("on-recovered".into(), "v4".into(), vec!["oncall".into()]),
        ]
    );
    // Healthy again later (after a release without an abort): nothing left to recover.
    let prev = RolloutStatus {
        phase: Some(RolloutPhase::Progressing),
        ..back.status.clone()
    };
    let mut again = plan(RolloutPhase::Healthy, &[]);
    again.status.notifications = back.status.notifications.clone();
    record(&prev, &mut again, &s, now());
    assert_eq!(again.status.notifications, back.status.notifications);
}

#[test]
fn the_log_keeps_the_last_records_and_drops_delivered_ones_first() {
    let s = subs(&[(Trigger::StepCompleted, &["hook"])]);
    let mut p = plan(RolloutPhase::Progressing, &[]);
    for i in 0..(KEPT + 5) {
        p.events = vec![PlannedEvent {
            type_: EventType::Normal,
            reason: "StepCompleted",
            message: format!("step {i}"),
        }];
        let prev = p.status.clone();
        record(&prev, &mut p, &s, now());
        if i == 0 {
            // The first is still pending: it outlives delivered ones.
            continue;
        }
        let log = p.status.notifications.as_mut().expect("a log");
        let last = log.records.last_mut().expect("a record");
        last.delivered = std::mem::take(&mut last.pending);
    }
    let log = p.status.notifications.as_ref().expect("a log");
    assert_eq!(log.records.len(), KEPT);
    assert_eq!(log.sequence, (KEPT + 5) as i64);
    assert_eq!(log.records[0].message, "step 0");
    assert_eq!(log.records[1].message, "step 6");
    assert_eq!(pending(&p.status).count(), 1);
}

#[test]
fn a_drill_pages_nobody_and_only_its_failure_is_told() {
    use crate::api::exercise::ExerciseInForce;
    let s = subs(&[
        (Trigger::ReleaseStarted, &["releases"]),
        (Trigger::Aborted, &["oncall"]),
        (Trigger::ExerciseFailed, &["sre"]),
    ]);
    let block = ExerciseInForce {
        name: "drill".into(),
        revision: Some("v3".into()),
        ..Default::default()
    };
    // The exercise's release starts and is aborted: nobody is told, and no abort is recorded
    // (so no recovery is told when it ends).
    let prev = RolloutStatus {
        exercise: Some(block.clone()),
        ..Default::default()
    };
    let mut p = plan(
        RolloutPhase::Degraded,
        &["RolloutStarted", "RolloutAborted"],
    );
    p.aborted = Some(AbortCause::SafetyStop);
    p.status.exercise = Some(block.clone());
    record(&prev, &mut p, &s, now());
    assert_eq!(triggers(&p), vec![]);
    // The exercise controller says it failed: the Rollout controller drops the block and
    // tells the receivers of on-exercise-failed, about the faulty revision.
    let mut p = plan(RolloutPhase::Healthy, &["ExerciseFailed"]);
    p.status.current_pod_hash = Some("v2".into());
    record(&prev, &mut p, &s, now());
    assert_eq!(
        triggers(&p),
        vec![(
            "on-exercise-failed".to_string(),
            "v3".to_string(),
            vec!["sre".to_string()]
        )]
    );
    // The same events outside an exercise are told as usual.
    let mut p = plan(
        RolloutPhase::Degraded,
        &["RolloutStarted", "RolloutAborted"],
    );
    p.aborted = Some(AbortCause::AnalysisFailed);
    record(&RolloutStatus::default(), &mut p, &s, now());
    assert_eq!(triggers(&p).len(), 2);
}
