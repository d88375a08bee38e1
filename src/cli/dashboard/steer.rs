//! Applying a control (promote, abort, retry, pause, resume) to a Rollout: the status patch
//! from [`status_patch`], merged with the `resourceVersion` it was computed from, under the
//! CLI's field manager, read again and recomputed when someone else wrote in between. Shared
//! by the dashboard's buttons and `kubectl sluice promote|abort|...`.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::api::constants::FIELD_MANAGER_CLI;
use crate::api::rollout::Rollout;
use crate::cli::control::{Control, ControlError, status_patch};

/// Reads and writes one attempt makes before a conflict (409) is given up on.
pub const ATTEMPTS: usize = 3;

/// Why a control was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    #[error("rollout {name:?} not found in namespace {namespace:?}")]
    NotFound { namespace: String, name: String },
    /// The control does not apply to the Rollout as it is; nothing was written.
    #[error(transparent)]
    DoesNotApply(#[from] ControlError),
    #[error("no answer from the cluster within {} s while {what}", limit.as_secs())]
    Timeout { what: &'static str, limit: Duration },
    #[error("reading rollout {name}: {source}")]
    Read { name: String, source: kube::Error },
    #[error("updating rollout {name}: {source}")]
    Write { name: String, source: kube::Error },
    #[error("rollout {0} kept changing; try again")]
    KeptChanging(String),
}

impl SteerError {
    /// A short reason, for logs and the page.
    pub fn reason(&self) -> &'static str {
        match self {
            SteerError::NotFound { .. } => "NotFound",
            SteerError::DoesNotApply(_) => "DoesNotApply",
            SteerError::Timeout { .. } => "Timeout",
            SteerError::Read { .. } => "ReadFailed",
            SteerError::Write { .. } => "WriteFailed",
            SteerError::KeptChanging(_) => "Conflict",
        }
    }

    /// The HTTP status that fits: the request was fine but does not apply (409), the Rollout
    /// is not there (404), the API server refused or did not answer (502).
    pub fn http_status(&self) -> u16 {
        match self {
            SteerError::NotFound { .. } => 404,
            SteerError::DoesNotApply(_) | SteerError::KeptChanging(_) => 409,
            SteerError::Read { source, .. } | SteerError::Write { source, .. } => match source {
                kube::Error::Api(e) if e.code == 403 => 403,
                _ => 502,
            },
            SteerError::Timeout { .. } => 504,
        }
    }
}

/// What a control did, in words: `rollout web aborted: all traffic back to stable`.
pub fn done(name: &str, control: Control) -> String {
    let done = match control {
        Control::Promote => "promoted",
        Control::PromoteFull => "promoted to the end",
        Control::Abort => "aborted: all traffic back to stable",
        Control::Retry => "retrying from the first step",
        Control::Pause => "paused",
        Control::Resume => "resumed",
    };
    format!("rollout {name} {done}")
}

/// Applies `control` to Rollout `name` of `api`'s namespace; each call to the API server
/// waits at most `limit`. Returns what was done, in words.
pub async fn steer(
    api: &Api<Rollout>,
    namespace: &str,
    name: &str,
    control: Control,
    limit: Duration,
) -> Result<String, SteerError> {
    let timeout = |what| SteerError::Timeout { what, limit };
    for _ in 0..ATTEMPTS {
        let ro = tokio::time::timeout(limit, api.get_opt(name))
            .await
            .map_err(|_| timeout("reading the rollout"))?
            .map_err(|source| SteerError::Read {
                name: name.into(),
                source,
            })?
            .ok_or_else(|| SteerError::NotFound {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        let status = status_patch(&ro, control, Timestamp::now())?;
        let patch = json!({
            "metadata": {"resourceVersion": ro.metadata.resource_version},
            "status": status
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER_CLI.into()),
            ..Default::default()
        };
        match tokio::time::timeout(
            limit,
            api.patch_status(name, &params, &Patch::Merge(&patch)),
        )
        .await
        .map_err(|_| timeout("updating the rollout"))?
        {
            Ok(_) => return Ok(done(name, control)),
            // Someone else wrote the Rollout in between: read it again and decide again.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(source) => {
                return Err(SteerError::Write {
                    name: name.into(),
                    source,
                });
            }
        }
    }
    Err(SteerError::KeptChanging(name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_done_and_why_not_in_words_and_status() {
        assert_eq!(
            done("web", Control::Abort),
            "rollout web aborted: all traffic back to stable"
        );
        assert_eq!(done("web", Control::Promote), "rollout web promoted");
        let refused = SteerError::from(ControlError::NotReleasing("web".into(), "abort"));
        assert_eq!(
            refused.to_string(),
            "web is not releasing a new revision: nothing to abort"
        );
        assert_eq!(
            (refused.http_status(), refused.reason()),
            (409, "DoesNotApply")
        );
        let missing = SteerError::NotFound {
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(missing.http_status(), 404);
        let forbidden = SteerError::Write {
            name: "web".into(),
            source: kube::Error::Api(
                kube::core::Status::failure(
                    "rollouts.sluice.dev \"web\" is forbidden",
                    "Forbidden",
                )
                .with_code(403)
                .boxed(),
            ),
        };
        assert_eq!(forbidden.http_status(), 403);
    }
}
