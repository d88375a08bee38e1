//! Names shared by the controller, the CLI and the tests: one place, used everywhere.

/// The API group of every Sluice kind.
pub const GROUP: &str = "sluice.dev";
/// The only served version.
pub const VERSION: &str = "v1alpha1";
/// Category so `kubectl get sluice` lists every Sluice object.
pub const CATEGORY: &str = "sluice";

/// Field manager for objects Sluice creates (ReplicaSets, AnalysisRuns) and Rollout status.
pub const FIELD_MANAGER_CONTROLLER: &str = "sluice.dev/controller";
/// Field manager for the few fields Sluice owns in objects users own (Services, routes).
pub const FIELD_MANAGER_TRAFFIC: &str = "sluice.dev/traffic";
/// Field manager for status patches made by `kubectl sluice` (abort, promote, ...).
pub const FIELD_MANAGER_CLI: &str = "sluice.dev/cli";

/// Label on every ReplicaSet and pod Sluice runs: the hash of the pod template.
pub const LABEL_POD_TEMPLATE_HASH: &str = "rollouts-pod-template-hash";
/// Label naming the Rollout that owns a ReplicaSet; the controller watches by it.
pub const LABEL_ROLLOUT: &str = "sluice.dev/rollout";

/// Finalizer on a Rollout: Sluice gives the Services back as the user wrote them first.
pub const FINALIZER: &str = "sluice.dev/cleanup";

/// Annotation on an old ReplicaSet: when Sluice may scale it to zero (RFC 3339).
pub const ANNOTATION_SCALE_DOWN_AT: &str = "sluice.dev/scale-down-at";

/// Annotation on a ReplicaSet: the role labels and annotations (`canaryMetadata`, ...) Sluice
/// put on its pods, as JSON, so that it takes off only its own keys.
pub const ANNOTATION_EPHEMERAL_METADATA: &str = "sluice.dev/ephemeral-metadata";

/// Defaults, as in Argo Rollouts.
pub mod defaults {
    pub const REPLICAS: i32 = 1;
    pub const REVISION_HISTORY_LIMIT: i32 = 10;
    pub const PROGRESS_DEADLINE_SECONDS: i32 = 600;
    pub const SCALE_DOWN_DELAY_SECONDS: i32 = 30;
    pub const ABORT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
    pub const AUTO_PROMOTION_ENABLED: bool = true;
    pub const MAX_SURGE: &str = "25%";
    pub const MAX_UNAVAILABLE: &str = "25%";
    pub const CONSECUTIVE_ERROR_LIMIT: i32 = 4;
    pub const FAILURE_LIMIT: i32 = 0;
    pub const INCONCLUSIVE_LIMIT: i32 = 0;
    pub const MEASUREMENT_RETENTION: i32 = 10;
}

/// Condition types on a Rollout. `Ready`, `Reconciling` and `Stalled` follow kstatus.
pub mod condition {
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const PAUSED: &str = "Paused";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const HEALTHY: &str = "Healthy";
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    /// The API server refused one of Sluice's writes (forbidden, invalid, denied by an
    /// admission policy); the message is the API server's. Cleared by the next write that works.
    pub const WRITE_REFUSED: &str = "WriteRefused";
}
