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
