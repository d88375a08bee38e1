//! Schema helpers for fields whose full Kubernetes schema would bloat the CRDs.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object the API server keeps as written (a pod template, a Job spec). Kubernetes checks
/// it when Sluice creates the ReplicaSet or Job from it, as Argo Rollouts does.
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Any JSON value, kept as written.
pub fn preserve_unknown_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A percentage as `maxSurge` and `maxUnavailable` take it (`25%`). Nine digits are more than
/// any meaningful percentage and keep the arithmetic on it far from overflowing.
pub const PERCENT_PATTERN: &str = r"^[0-9]{1,9}%$";

/// A pod count or a percentage of `replicas` (`maxSurge`, `maxUnavailable`): a non-negative
/// 32-bit integer or a string such as `25%`. The API server applies `minimum`/`maximum` to
/// integers and `pattern` to strings.
pub fn count_or_percent(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "minimum": 0,
        "maximum": i32::MAX,
        "pattern": PERCENT_PATTERN
    })
}

/// Seconds as a non-negative 32-bit integer, or a duration string such as `30s` or `1h30m`
/// (`pause.duration`).
pub fn seconds_or_duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "minimum": 0,
        "maximum": i32::MAX,
        "pattern": super::duration::DURATION_PATTERN
    })
}
