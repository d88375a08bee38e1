//! Errors of the Rollout controller's I/O edges; each has a short reason used as a metric label
//! and in logs.

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

impl Error {
    /// A short, bounded reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(e),
                ..
            } if e.code == 409 => "Conflict",
            Error::Kube { .. } => "KubeError",
            Error::Timeout { .. } => "Timeout",
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
