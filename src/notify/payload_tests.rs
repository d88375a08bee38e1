use super::*;
use crate::api::rollout::NotifiedAnalysis;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

fn notice(trigger: Trigger, message: &str) -> Notice {
    Notice {
        namespace: "shop".into(),
        name: "web".into(),
        uid: "u-1".into(),
        stable: Some("v2".into()),
        link: Some("https://grafana.test/d/x?var-rollout=web".into()),
        record: NotificationRecord {
            id: 7,
            trigger: trigger.name().into(),
            revision: "v3".into(),
            at: Time(Timestamp::from_second(1_800_000_000).expect("a time")),
            message: message.into(),
            analysis: (trigger == Trigger::Aborted).then(|| NotifiedAnalysis {
                run: "web-v3-2-step-1".into(),
                metric: Some("success-rate".into()),
                value: Some("[0.62]".into()),
                condition: Some("successCondition: result[0] >= 0.95".into()),
            }),
            pending: vec!["x".into()],
            delivered: vec![],
            failed: vec![],
        },
    }
}

#[test]
fn slack_blocks_carry_the_rollout_revision_reason_metric_and_link() {
    let b = slack(&notice(Trigger::Aborted, "canary <failed> & rolled back"));
    assert_eq!(b["blocks"][0]["type"], "header");
    assert_eq!(b["blocks"][0]["text"]["text"], "Release aborted: shop/web");
    let fields: Vec<&str> = b["blocks"][1]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        fields,
        vec![
            "*Rollout*\nshop/web",
            "*Revision*\n`v3`",
            "*Stable*\n`v2`",
            "*AnalysisRun*\nweb-v3-2-step-1",
            "*Metric*\nsuccess-rate",
            "*Value*\n[0.62]",
            "*Condition*\n`successCondition: result[0] &gt;= 0.95`",
        ]
    );
    assert_eq!(
        b["blocks"][2]["text"]["text"],
        "canary &lt;failed&gt; &amp; rolled back"
    );
    assert_eq!(
        b["blocks"][3]["elements"][0]["url"],
        "https://grafana.test/d/x?var-rollout=web"
    );
    assert_eq!(b["blocks"][4]["type"], "context");
    assert!(
        b["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Release aborted: shop/web: canary"))
    );
}

#[test]
fn slack_limits_are_kept() {
    let mut n = notice(Trigger::Paused, &"m".repeat(5000));
    n.name = "w".repeat(200);
    let b = slack(&n);
    let header = b["blocks"][0]["text"]["text"].as_str().expect("header");
    assert_eq!(header.chars().count(), 150);
    assert!(header.ends_with('…'));
    let text = b["blocks"][2]["text"]["text"].as_str().expect("text");
    assert_eq!(text.chars().count(), 3000);
}

#[test]
fn pagerduty_pages_on_abort_resolves_on_recovery_and_refuses_the_rest() {
    let t = pagerduty(&notice(Trigger::Aborted, "bad"), "KEY").expect("a trigger");
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["routing_key"], "KEY");
    assert_eq!(t["dedup_key"], "sluice/shop/web/v3");
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(t["payload"]["source"], "shop/web");
    assert_eq!(t["payload"]["timestamp"], "2027-01-15T08:00:00Z");
    assert_eq!(t["payload"]["custom_details"]["Metric"], "success-rate");
    assert_eq!(
        t["links"][0]["href"],
        "https://grafana.test/d/x?var-rollout=web"
    );
    let long = pagerduty(&notice(Trigger::Aborted, &"x".repeat(2000)), "KEY").expect("ok");
    assert_eq!(
        long["payload"]["summary"]
            .as_str()
            .map(|s| s.chars().count()),
        Some(1024)
    );
    let w = pagerduty(&notice(Trigger::AnalysisInconclusive, "?"), "KEY").expect("a trigger");
    assert_eq!(w["payload"]["severity"], "warning");
    for resolving in [Trigger::Recovered, Trigger::Promoted] {
        let r = pagerduty(&notice(resolving, "ok"), "KEY").expect("a resolve");
        assert_eq!(
            r,
            serde_json::json!({"routing_key": "KEY", "event_action": "resolve", "dedup_key": "sluice/shop/web/v3"})
        );
    }
    let e = pagerduty(&notice(Trigger::Paused, "p"), "KEY").expect_err("not paged");
    assert!(e.contains("on-paused"), "{e}");
}

#[test]
fn every_request_has_an_idempotency_key_and_webhook_headers_are_added() {
    let r = request(
        &Receiver::Webhook {
            url: "http://127.0.0.1:1/h".into(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer t".into())]),
        },
        &notice(Trigger::Promoted, "done"),
    )
    .expect("a request");
    assert_eq!(r.headers["Idempotency-Key"], "u-1/7");
    assert_eq!(r.headers["Authorization"], "Bearer t");
    assert_eq!(r.body["id"], "u-1/7");
    assert_eq!(r.body["kind"], "RolloutNotification");
    assert_eq!(r.body["analysis"], serde_json::Value::Null);
    let t = teams(&notice(Trigger::Aborted, "bad"));
    let card = &t["attachments"][0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["body"][1]["facts"][4]["title"], "Metric");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
}
