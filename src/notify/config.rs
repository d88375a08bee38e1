//! The notifications' configuration (pure): receivers, per-namespace default subscriptions
//! and a link, read from the `config.yaml` key of a ConfigMap; a value written `$key` is the
//! Secret's `key` (the Secret of the same name in the same namespace).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::record::{Subscriptions, Trigger};

/// The ConfigMap key holding the configuration.
pub const CONFIG_KEY: &str = "config.yaml";
/// Default subscriptions for a namespace without its own.
pub const EVERY_NAMESPACE: &str = "*";

/// Where and how a receiver is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Receiver {
    /// A Slack incoming webhook.
    Slack { url: String },
    /// PagerDuty's Events API v2.
    PagerDuty { url: String, routing_key: String },
    /// A Microsoft Teams workflow webhook (an Adaptive Card).
    Teams { url: String },
    /// Any HTTP endpoint taking Sluice's JSON (docs/notifications.md).
    Webhook {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

impl Receiver {
    /// The kind, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Receiver::Slack { .. } => "slack",
            Receiver::PagerDuty { .. } => "pagerduty",
            Receiver::Teams { .. } => "teams",
            Receiver::Webhook { .. } => "webhook",
        }
    }
}

/// How deliveries are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait after the first failed attempt; it doubles after each.
    pub first_wait: Duration,
    /// The longest wait between attempts.
    pub max_wait: Duration,
    /// Each attempt's time limit.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// The wait before attempt `n` (the second is `n = 1`).
    pub fn wait(&self, n: u32) -> Duration {
        let doubled = self
            .first_wait
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
        doubled.min(self.max_wait)
    }
}

/// The configuration as read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Receivers by name; one that cannot be used says why.
    pub receivers: BTreeMap<String, Result<Receiver, String>>,
    /// Default subscriptions by namespace (`*`: every namespace without its own).
    pub defaults: BTreeMap<String, Subscriptions>,
    /// A link added to each notification: `{{namespace}}` and `{{name}}` are replaced.
    pub link: Option<String>,
    pub retry: Retry,
}

impl Config {
    /// The default subscriptions of namespace `ns`.
    pub fn default_for(&self, ns: &str) -> Option<&Subscriptions> {
        self.defaults
            .get(ns)
            .or_else(|| self.defaults.get(EVERY_NAMESPACE))
    }

    /// The link for one Rollout, when one is configured.
    pub fn link_for(&self, ns: &str, name: &str) -> Option<String> {
        self.link.as_ref().map(|l| {
            l.replace("{{namespace}}", ns)
                .replace("{{name}}", name)
                .replace("{{ namespace }}", ns)
                .replace("{{ name }}", name)
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    receivers: Vec<RawReceiver>,
    #[serde(default)]
    defaults: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    delivery: Option<RawDelivery>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawReceiver {
    name: String,
    #[serde(default)]
    slack: Option<RawUrl>,
    #[serde(default)]
    pagerduty: Option<RawPagerDuty>,
    #[serde(default)]
    teams: Option<RawUrl>,
    #[serde(default)]
    webhook: Option<RawWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrl {
    url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPagerDuty {
    routing_key: String,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDelivery {
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    max_wait_seconds: Option<u64>,
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";

/// Reads `config.yaml` (absent: no receivers), its `$key` values from `secret`. A document
/// that does not read, or a default naming a trigger that does not exist, is an error for
/// the whole; a receiver that cannot be used (no kind, two kinds, a missing secret key, a
/// URL that is not http(s)) is an error for that receiver only.
pub fn parse(config: Option<&str>, secret: &BTreeMap<String, String>) -> Result<Config, String> {
    let Some(text) = config.filter(|t| !t.trim().is_empty()) else {
        return Ok(Config::default());
    };
    let raw: Raw =
        serde_saphyr::from_str(text).map_err(|e| format!("{CONFIG_KEY} does not read: {e}"))?;
    let mut out = Config {
        link: raw.link,
        ..Config::default()
    };
    if let Some(d) = raw.delivery {
        let r = &mut out.retry;
        r.attempts = d.attempts.unwrap_or(r.attempts).clamp(1, 20);
        r.timeout = d
            .timeout_seconds
            .map_or(r.timeout, |s| Duration::from_secs(s.clamp(1, 120)));
        r.max_wait = d
            .max_wait_seconds
            .map_or(r.max_wait, |s| Duration::from_secs(s.clamp(1, 600)));
    }
    for r in raw.receivers {
        if out.receivers.contains_key(&r.name) {
            return Err(format!("receiver {:?} is named twice", r.name));
        }
        let name = r.name.clone();
        out.receivers.insert(name, receiver(r, secret));
    }
    for (ns, subs) in raw.defaults {
        let mut parsed = Subscriptions::new();
        for (trigger, names) in subs {
            let t = Trigger::parse(&trigger).ok_or_else(|| {
                format!(
                    "defaults.{ns}: no trigger {trigger:?} (triggers: {})",
                    trigger_names()
                )
            })?;
            parsed
                .entry(t)
                .or_default()
                .extend(names.into_iter().collect::<BTreeSet<_>>());
        }
        out.defaults.insert(ns, parsed);
    }
    Ok(out)
}

fn trigger_names() -> String {
    Trigger::ALL.map(Trigger::name).join(", ")
}

fn receiver(r: RawReceiver, secret: &BTreeMap<String, String>) -> Result<Receiver, String> {
    let value = |v: &str| -> Result<String, String> {
        match v.strip_prefix('$') {
            Some(key) => secret.get(key).cloned().ok_or_else(|| {
                format!("the Secret has no key {key:?} (the receiver's {v:?} names it)")
            }),
            None => Ok(v.to_string()),
        }
    };
    let url = |v: &str| -> Result<String, String> {
        let u = value(v)?;
        if u.starts_with("https://") || u.starts_with("http://") {
            Ok(u)
        } else {
            Err("its url is not an http(s) URL".to_string())
        }
    };
    let kinds = [
        r.slack.is_some(),
        r.pagerduty.is_some(),
        r.teams.is_some(),
        r.webhook.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("a receiver has exactly one of slack, pagerduty, teams or webhook".into());
    }
    if let Some(s) = r.slack {
        return Ok(Receiver::Slack { url: url(&s.url)? });
    }
    if let Some(t) = r.teams {
        return Ok(Receiver::Teams { url: url(&t.url)? });
    }
    if let Some(p) = r.pagerduty {
        return Ok(Receiver::PagerDuty {
            url: url(p.url.as_deref().unwrap_or(PAGERDUTY_EVENTS))?,
            routing_key: value(&p.routing_key)?,
        });
    }
    let w = r.webhook.ok_or("no kind")?;
    let headers = w
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), value(v)?)))
        .collect::<Result<_, String>>()?;
    Ok(Receiver::Webhook {
        url: url(&w.url)?,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> BTreeMap<String, String> {
        [
            ("slack-url", "https://hooks.slack.test/T1/B2/c3"),
            ("pd-key", "R0UT1NGKEY"),
            ("token", "Bearer s3cret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const CONFIG: &str = r#"
link: "https://grafana.test/d/sluice?var-namespace={{namespace}}&var-rollout={{name}}"
receivers:
  - name: releases
    slack: {url: $slack-url}
  - name: oncall
    pagerduty: {routingKey: $pd-key}
  - name: audit
    webhook:
      url: http://127.0.0.1:9/hook
      headers: {Authorization: $token}
  - name: team
    teams: {url: $missing}
  - name: both
    slack: {url: https://a.test}
    teams: {url: https://b.test}
defaults:
  "*":
    on-aborted: [oncall]
  shop:
    on-promoted: [releases]
    on-aborted: [oncall, releases]
delivery: {attempts: 3, timeoutSeconds: 5}
"#;

    #[test]
    fn receivers_read_their_secrets_and_a_bad_one_says_why() {
        let c = parse(Some(CONFIG), &secret()).expect("reads");
        assert_eq!(
            c.receivers["releases"],
            Ok(Receiver::Slack {
                url: "https://hooks.slack.test/T1/B2/c3".into()
            })
        );
        assert_eq!(
            c.receivers["oncall"],
            Ok(Receiver::PagerDuty {
                url: PAGERDUTY_EVENTS.into(),
                routing_key: "R0UT1NGKEY".into()
            })
        );
        let Ok(Receiver::Webhook { headers, .. }) = &c.receivers["audit"] else {
            panic!("a webhook: {:?}", c.receivers["audit"]);
        };
        assert_eq!(headers["Authorization"], "Bearer s3cret");
        let team = c.receivers["team"].as_ref().expect_err("no secret key");
        assert!(team.contains("\"missing\""), "{team}");
        assert!(c.receivers["both"].is_err());
        assert_eq!(c.retry.attempts, 3);
        assert_eq!(c.retry.timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_namespace_default_replaces_the_default_for_every_namespace() {
        let c = parse(Some(CONFIG), &secret()).expect("reads");
        let shop = c.default_for("shop").expect("shop's");
        assert_eq!(shop.len(), 2);
        assert_eq!(shop[&Trigger::Aborted].len(), 2);
        let other = c.default_for("pay").expect("the default");
        assert_eq!(
            other.keys().copied().collect::<Vec<_>>(),
            vec![Trigger::Aborted]
        );
        assert_eq!(
            c.link_for("shop", "web").as_deref(),
            Some("https://grafana.test/d/sluice?var-namespace=shop&var-rollout=web")
        );
    }

    #[test]
    fn a_document_that_does_not_read_is_an_error_and_none_is_empty() {
        assert_eq!(parse(None, &secret()), Ok(Config::default()));
        assert_eq!(parse(Some("  \n"), &secret()), Ok(Config::default()));
        let e = parse(Some("receivers: [{name: a, slak: {url: x}}]"), &secret())
            .expect_err("unknown field");
        assert!(e.contains("slak"), "{e}");
        let e = parse(Some("defaults: {shop: {on-done: [a]}}"), &secret()).expect_err("trigger");
        assert!(e.contains("on-done") && e.contains("on-aborted"), "{e}");
        let e = parse(
            Some("receivers: [{name: a, webhook: {url: 'http://x'}}, {name: a, webhook: {url: 'http://y'}}]"),
            &secret(),
        )
        .expect_err("twice");
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn waits_double_up_to_the_longest() {
        let r = Retry::default();
        let waits: Vec<u64> = (1..8).map(|n| r.wait(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(r.wait(64), r.max_wait);
    }
}
