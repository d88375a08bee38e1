//! Errors of the controllers' I/O edges; each has a short reason used as a metric label and in
//! logs.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: no answer from the API server within the timeout")]
    Timeout { what: &'static str },
    /// A reconcile waited for every watch cache's first list and not all came in time (which
    /// ones did not).
    #[error("the watch caches are not all listed: {0}")]
    CachesNotListed(String),
    #[error("serializing: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("the Rollout has no namespace")]
    NoNamespace,
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A traffic router object could not be brought to the state the plan says.
    #[error("traffic routing: {0}")]
    Traffic(String),
}

/// A request the API server refused on its merits: forbidden (RBAC), invalid (schema, a field
/// a ReplicaSet cannot carry) or denied by an admission policy. Sending it again unchanged
/// cannot work until something outside Sluice changes, so it is shown on the Rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What Sluice was doing (`apply ReplicaSet`, ...).
    pub what: &'static str,
    /// The API server's reason (`Forbidden`, `Invalid`, `BadRequest`).
    pub reason: String,
    /// The API server's message, which names the object and, for an invalid one, the field.
    pub message: String,
}

impl Refusal {
    /// One line for a condition and an Event.
    pub fn describe(&self) -> String {
        format!("{} refused by the API server: {}", self.what, self.message)
    }
}

impl Error {
    /// The HTTP status code the API server answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Kube {
                source: kube::Error::Api(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }

    /// The refusal behind this error, if the API server refused a request on its merits.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Kube {
                what,
                source: kube::Error::Api(e),
            } if matches!(e.code, 400 | 403 | 422) => Some(Refusal {
                what,
                reason: if e.reason.is_empty() {
                    match e.code {
                        403 => "Forbidden",
                        422 => "Invalid",
                        _ => "BadRequest",
                    }
                    .to_string()
                } else {
                    e.reason.clone()
                },
                message: e.message.clone(),
            }),
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.refusal(),
                _ => None,
            },
            _ => None,
        }
    }

    /// A short, bounded reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(e),
                ..
            } if e.code == 409 => "Conflict",
            Error::Kube {
                source: kube::Error::Api(e),
                ..
            } if matches!(e.code, 400 | 403 | 422) => "Refused",
            Error::Kube { .. } => "KubeError",
            Error::Timeout { .. } => "Timeout",
            Error::CachesNotListed(_) => "CachesNotListed",
            Error::Serialize(_) => "Serialize",
            Error::NoNamespace => "NoNamespace",
            Error::Traffic(_) => "TrafficRouting",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.reason(),
                _ => "Finalizer",
            },
        }
    }
}
