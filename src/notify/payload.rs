//! What each kind of receiver is sent (pure): Slack blocks, a PagerDuty Events API v2 event,
//! a Teams Adaptive Card, or Sluice's own JSON (docs/notifications.md).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::config::Receiver;
use super::record::Trigger;
use crate::api::rollout::NotificationRecord;

/// One record of one Rollout, as told.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub stable: Option<String>,
    pub link: Option<String>,
    pub record: NotificationRecord,
}

impl Notice {
    /// The same for every delivery of this record, across restarts (an idempotency key).
    pub fn key(&self) -> String {
        format!("{}/{}", self.uid, self.record.id)
    }

    fn trigger(&self) -> Option<Trigger> {
        Trigger::parse(&self.record.trigger)
    }

    fn title(&self) -> String {
        let what = match self.trigger() {
            Some(Trigger::ReleaseStarted) => "Release started",
            Some(Trigger::StepCompleted) => "Step completed",
            Some(Trigger::Paused) => "Release paused",
            Some(Trigger::Promoted) => "Promoted",
            Some(Trigger::Aborted) => "Release aborted",
            Some(Trigger::AnalysisInconclusive) => "Analysis inconclusive",
            Some(Trigger::Recovered) => "Recovered",
            Some(Trigger::ExerciseFailed) => "Rollback exercise failed",
            None => "Rollout",
        };
        format!("{what}: {}/{}", self.namespace, self.name)
    }

    /// Label and value pairs shown by every kind (those without a value left out).
    fn facts(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("Rollout", format!("{}/{}", self.namespace, self.name)),
            ("Revision", self.record.revision.clone()),
        ];
        if let Some(s) = &self.stable {
            out.push(("Stable", s.clone()));
        }
        if let Some(a) = &self.record.analysis {
            out.push(("AnalysisRun", a.run.clone()));
            for (label, v) in [
                ("Metric", &a.metric),
                ("Value", &a.value),
                ("Condition", &a.condition),
            ] {
                if let Some(v) = v {
                    out.push((label, v.clone()));
                }
            }
        }
        out
    }
}

/// An HTTP POST to make.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

/// The request telling `receiver` of `notice`; `Err` when this kind of receiver takes no
/// such notification (PagerDuty pages for aborts and inconclusive analyses and resolves on
/// promotion and recovery only).
pub fn request(receiver: &Receiver, notice: &Notice) -> Result<Request, String> {
    let mut headers = BTreeMap::from([("Idempotency-Key".to_string(), notice.key())]);
    let (url, body) = match receiver {
        Receiver::Slack { url } => (url, slack(notice)),
        Receiver::Teams { url } => (url, teams(notice)),
        Receiver::PagerDuty { url, routing_key } => (url, pagerduty(notice, routing_key)?),
        Receiver::Webhook { url, headers: h } => {
            headers.extend(h.clone());
            (url, webhook(notice))
        }
    };
    Ok(Request {
        url: url.clone(),
        headers,
        body,
    })
}

/// At most `max` characters, an ellipsis marking a cut.
fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn escapes: `&`, `<` and `>`.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` for notifications and screen readers, blocks
/// for the channel (header; up to ten fields; the reason; a button to the link; context).
/// Slack's limits are kept: 150 characters in a header, 2,000 in a field, 3,000 in a section.
pub fn slack(n: &Notice) -> Value {
    let fields: Vec<Value> = n
        .facts()
        .into_iter()
        .take(10)
        .map(|(label, v)| {
            let v = match label {
                "Revision" | "Stable" | "Condition" => format!("`{}`", escaped(&v)),
                _ => escaped(&v),
            };
            json!({"type": "mrkdwn", "text": bounded(&format!("*{label}*\n{v}"), 2000)})
        })
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": bounded(&n.title(), 150), "emoji": true}}),
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": bounded(&escaped(&n.record.message), 3000)}}),
    ];
    if let Some(link) = &n.link {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the Rollout"},
            "url": bounded(link, 3000),
        }]}));
    }
    blocks.push(json!({"type": "context", "elements": [{
        "type": "mrkdwn",
        "text": format!("Sluice · {} · {}", n.record.trigger, n.record.at.0),
    }]}));
    json!({
        "text": bounded(&format!("{}: {}", n.title(), n.record.message), 3000),
        "blocks": blocks,
    })
}

/// The PagerDuty dedup key: one alert per Rollout and revision.
pub fn dedup_key(n: &Notice) -> String {
    format!("sluice/{}/{}/{}", n.namespace, n.name, n.record.revision)
}

/// A PagerDuty Events API v2 event: `trigger` (critical for an abort, warning for an
/// inconclusive analysis) or `resolve` (promoted, recovered), keyed per Rollout and revision.
pub fn pagerduty(n: &Notice, routing_key: &str) -> Result<Value, String> {
    let severity = match n.trigger() {
        Some(Trigger::Promoted | Trigger::Recovered) => {
            return Ok(json!({
                "routing_key": routing_key,
                "event_action": "resolve",
                "dedup_key": dedup_key(n),
            }));
        }
        Some(Trigger::Aborted) => "critical",
        Some(Trigger::AnalysisInconclusive | Trigger::ExerciseFailed) => "warning",
        _ => {
            return Err(format!(
                "PagerDuty receivers take on-aborted, on-analysis-inconclusive, on-exercise-failed, on-promoted and on-recovered, not {}",
                n.record.trigger
            ));
        }
    };
    let details: serde_json::Map<String, Value> = n
        .facts()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .chain([("message".to_string(), json!(n.record.message))])
        .collect();
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(n),
        "client": "Sluice",
        "payload": {
            "summary": bounded(&format!("{}: {}", n.title(), n.record.message), 1024),
            "source": format!("{}/{}", n.namespace, n.name),
            "severity": severity,
            "timestamp": n.record.at.0.to_string(),
            "component": n.name,
            "group": n.namespace,
            "class": n.record.trigger,
            "custom_details": details,
        },
    });
    if let Some(link) = &n.link {
        event["links"] = json!([{"href": link, "text": "Rollout"}]);
        event["client_url"] = json!(link);
    }
    Ok(event)
}

/// A Teams workflow webhook message carrying an Adaptive Card.
pub fn teams(n: &Notice) -> Value {
    let facts: Vec<Value> = n
        .facts()
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": value}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": n.title(), "wrap": true},
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": n.record.message, "wrap": true},
        ],
    });
    if let Some(link) = &n.link {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open the Rollout", "url": link}]);
    }
    json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": card,
    }]})
}

/// Sluice's own JSON, documented in docs/notifications.md.
pub fn webhook(n: &Notice) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "RolloutNotification",
        "id": n.key(),
        "trigger": n.record.trigger,
        "at": n.record.at.0.to_string(),
        "rollout": {"namespace": n.namespace, "name": n.name, "uid": n.uid},
        "revision": n.record.revision,
        "stableRevision": n.stable,
        "message": n.record.message,
        "analysis": n.record.analysis,
        "link": n.link,
    })
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
