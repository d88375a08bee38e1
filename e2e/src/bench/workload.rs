//! The benchmark's objects, one set per controller: the same manifests with the group swapped
//! (`sluice.dev/v1alpha1` for Sluice, `argoproj.io/v1alpha1` for Argo Rollouts).
//!
//! Each Rollout has 3 replicas, a stable and a canary Service, and a canary of 4 steps:
//! `setWeight: 25`, `pause: {}`, an `analysis` step (a `web` metric every 5 s against the
//! benchmark's own endpoint), `setWeight: 75`. Rollouts are spread over namespaces of
//! `per_namespace` each; every namespace has the AnalysisTemplate.

use serde_json::{Value, json};

/// Which controller a set of objects is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavour {
    Sluice,
    Argo,
}

impl Flavour {
    pub const ALL: [Flavour; 2] = [Flavour::Sluice, Flavour::Argo];

    pub fn group(self) -> &'static str {
        match self {
            Flavour::Sluice => "sluice.dev",
            Flavour::Argo => "argoproj.io",
        }
    }

    pub fn api_version(self) -> String {
        format!("{}/v1alpha1", self.group())
    }

    /// How the benchmark names it in tables.
    pub fn title(self) -> &'static str {
        match self {
            Flavour::Sluice => "Sluice",
            Flavour::Argo => "Argo Rollouts",
        }
    }

    /// Short tag in object names.
    pub fn tag(self) -> &'static str {
        match self {
            Flavour::Sluice => "s",
            Flavour::Argo => "a",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sluice" => Some(Flavour::Sluice),
            "argo" | "argo-rollouts" => Some(Flavour::Argo),
            _ => None,
        }
    }
}

/// Replicas of every Rollout.
pub const REPLICAS: i32 = 3;
/// The AnalysisTemplate every namespace has.
pub const TEMPLATE: &str = "bench-web";
/// The analysis step's measurement interval.
pub const ANALYSIS_INTERVAL_SECONDS: u64 = 5;

/// Where the `i`th of a flavour's Rollouts lives and what it is called.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub namespace: String,
    pub name: String,
}

/// The namespace of a flavour's `block`th group of Rollouts.
pub fn namespace(flavour: Flavour, block: usize) -> String {
    format!("bench-{}-{block:03}", flavour.tag())
}

/// The `n` Rollouts of a flavour, `per_namespace` to a namespace.
pub fn slots(flavour: Flavour, n: usize, per_namespace: usize) -> Vec<Slot> {
    let per = per_namespace.max(1);
    (0..n)
        .map(|i| Slot {
            namespace: namespace(flavour, i / per),
            name: format!("app-{i:05}"),
        })
        .collect()
}

/// The namespace holding the Rollout whose canary turns bad (apart from the N).
pub fn probe_namespace(flavour: Flavour) -> String {
    format!("bench-{}-probe", flavour.tag())
}

/// Name of the Rollout whose canary turns bad.
pub const PROBE: &str = "probe";

/// The image of revision `revision`.
pub fn image(revision: u32) -> String {
    format!("registry.example/web:{revision}")
}

/// The Rollout `slot` as `flavour` spells it, at revision 1.
pub fn rollout(flavour: Flavour, slot: &Slot) -> Value {
    let name = &slot.name;
    json!({
        "apiVersion": flavour.api_version(),
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": slot.namespace, "labels": {"bench": "rollout"}},
        "spec": {
            "replicas": REPLICAS,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image(1)}]}
            },
            "strategy": {"canary": {
                "stableService": format!("{name}-stable"),
                "canaryService": format!("{name}-canary"),
                "steps": [
                    {"setWeight": 25},
                    {"pause": {}},
                    {"analysis": {
                        "templates": [{"templateName": TEMPLATE}],
                        "args": [
                            {"name": "namespace", "value": slot.namespace},
                            {"name": "name", "value": name}
                        ]
                    }},
                    {"setWeight": 75}
                ]
            }}
        }
    })
}

/// The stable and canary Services of `slot` (selecting the Rollout's pods; each controller
/// narrows them to a revision). With `first`, their cluster IPs are the ones [`cluster_ip`]
/// gives `first` and `first + 1`; without, the API server picks them.
pub fn services(slot: &Slot, first: Option<u32>) -> [Value; 2] {
    let mut k = first;
    ["stable", "canary"].map(|role| {
        let ip = k.and_then(cluster_ip);
        k = k.map(|k| k + 1);
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": format!("{}-{role}", slot.name), "namespace": slot.namespace},
            "spec": {
                "clusterIP": ip.map(|ip| ip.to_string()),
                "selector": {"app": slot.name},
                "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]
            }
        })
    })
}

/// The cluster IP of the benchmark's `k`th Service: the range's addresses in order, after the
/// band the API server keeps for addresses asked for by name (the first 256 of a /12). The
/// benchmark names each Service's address because kube-apiserver's own allocator (IPAddress
/// objects, on by default since 1.33) slows as the range fills: on a fresh control plane here
/// (2026-12-03, 32 writers), 6,000 Services took 117 s with the addresses allocated (82 a
/// second at first, 40 by the end) and 58 s with them named (128 a second). `None` past the
/// range's end: the API server then picks one.
pub fn cluster_ip(k: u32) -> Option<std::net::Ipv4Addr> {
    let (base, bits) = crate::controlplane::SERVICE_CIDR.split_once('/')?;
    let base = u32::from(base.parse::<std::net::Ipv4Addr>().ok()?);
    let size = 1u32.checked_shl(32 - bits.parse::<u32>().ok()?)?;
    let reserved = (size / 16).clamp(16, 256);
    let offset = reserved.checked_add(k)?;
    // The range's last address is its broadcast address, never given.
    (offset < size - 1).then(|| std::net::Ipv4Addr::from(base + offset))
}

/// The AnalysisTemplate: a `web` metric asking the benchmark's endpoint at `base` (e.g.
/// `http://127.0.0.1:4000`) whether the Rollout's canary is good, every 5 s, failing at the
/// first bad answer. Both controllers read `{{args.x}}` in the URL and judge `result == true`.
pub fn template(flavour: Flavour, namespace: &str, base: &str) -> Value {
    json!({
        "apiVersion": flavour.api_version(),
        "kind": "AnalysisTemplate",
        "metadata": {"name": TEMPLATE, "namespace": namespace},
        "spec": {
            "args": [{"name": "namespace"}, {"name": "name"}],
            "metrics": [{
                "name": "good",
                "interval": format!("{ANALYSIS_INTERVAL_SECONDS}s"),
                "count": 120,
                "failureLimit": 0,
                "successCondition": "result == true",
                "provider": {"web": {
                    "url": format!("{base}/good/{{{{args.namespace}}}}/{{{{args.name}}}}"),
                    "jsonPath": "{$.good}",
                    "timeoutSeconds": 5
                }}
            }]
        }
    })
}

/// A merge patch moving a Rollout to `image(revision)`.
pub fn image_patch(revision: u32) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image(revision)}]}}}})
}

/// A merge patch for the status subresource that lifts a step's pause (what both plugins'
/// `promote` send for a Rollout paused by a `pause: {}` step).
pub fn promote_patch() -> Value {
    json!({"status": {"pauseConditions": null}})
}

/// A merge patch that changes nothing either controller reads: it wakes every Rollout for a
/// reconcile with nothing to do.
pub fn poke_patch(round: u32) -> Value {
    json!({"metadata": {"annotations": {"bench.sluice.dev/poke": round.to_string()}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without_group(mut v: Value) -> Value {
        v["apiVersion"] = Value::Null;
        v
    }

    #[test]
    fn both_flavours_get_the_same_manifests_but_for_the_group() {
        let slot = &slots(Flavour::Sluice, 1, 100)[0];
        let s = rollout(Flavour::Sluice, slot);
        let a = rollout(Flavour::Argo, slot);
        assert_eq!(s["apiVersion"], "sluice.dev/v1alpha1");
        assert_eq!(a["apiVersion"], "argoproj.io/v1alpha1");
        assert_eq!(without_group(s), without_group(a));
        let base = "http://127.0.0.1:1";
        let ts = template(Flavour::Sluice, "ns", base);
        let ta = template(Flavour::Argo, "ns", base);
        assert_ne!(ts, ta);
        assert_eq!(without_group(ts), without_group(ta));
    }

    #[test]
    fn cluster_ips_are_in_the_range_past_the_named_band_and_never_repeat() {
        use std::net::Ipv4Addr;
        // 10.0.0.0/12: the first 256 addresses are the band for addresses asked for by name.
        assert_eq!(cluster_ip(0), Some(Ipv4Addr::new(10, 0, 1, 0)));
        assert_eq!(cluster_ip(255), Some(Ipv4Addr::new(10, 0, 1, 255)));
        assert_eq!(cluster_ip(256), Some(Ipv4Addr::new(10, 0, 2, 0)));
        // The range's last address (10.15.255.255) is never given; past it, none.
        let last = (1u32 << 20) - 256 - 2;
        assert_eq!(cluster_ip(last), Some(Ipv4Addr::new(10, 15, 255, 254)));
        assert_eq!(cluster_ip(last + 1), None);
        assert_eq!(cluster_ip(u32::MAX), None);
        // Two controllers at N = 10,000, a probe each: 40,004 distinct addresses.
        let ips: std::collections::BTreeSet<_> = (0..40_004).filter_map(cluster_ip).collect();
        assert_eq!(ips.len(), 40_004);
        let slot = &slots(Flavour::Sluice, 1, 100)[0];
        let [stable, canary] = services(slot, Some(7));
        assert_eq!(services(slot, None)[0]["spec"]["clusterIP"], Value::Null);
        assert_eq!(stable["spec"]["clusterIP"], "10.0.1.7");
        assert_eq!(canary["spec"]["clusterIP"], "10.0.1.8");
        assert_eq!(canary["metadata"]["name"], "app-00000-canary");
    }

    #[test]
    fn the_canary_has_four_steps_with_an_analysis_and_the_url_takes_the_arguments() {
        let slot = &slots(Flavour::Argo, 3, 2)[2];
        let ro = rollout(Flavour::Argo, slot);
        let steps = ro["spec"]["strategy"]["canary"]["steps"]
            .as_array()
            .expect("steps");
        assert_eq!(steps.len(), 4);
        assert!(steps[2].get("analysis").is_some());
        assert_eq!(ro["spec"]["replicas"], REPLICAS);
        let t = template(Flavour::Argo, &slot.namespace, "http://h:1");
        assert_eq!(
            t["spec"]["metrics"][0]["provider"]["web"]["url"],
            "http://h:1/good/{{args.namespace}}/{{args.name}}"
        );
    }

    #[test]
    fn rollouts_are_spread_over_namespaces_with_unique_names() {
        let all = slots(Flavour::Sluice, 250, 100);
        let namespaces: std::collections::BTreeSet<_> =
            all.iter().map(|s| s.namespace.as_str()).collect();
        assert_eq!(
            namespaces.into_iter().collect::<Vec<_>>(),
            ["bench-s-000", "bench-s-001", "bench-s-002"]
        );
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), 250);
        assert_eq!(all[249].name, "app-00249");
    }
}
