//! Calls to the API server, each under a timeout.

use std::future::Future;
use std::time::Duration;

use super::error::Error;

/// Time allowed for one call to the API server.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one API call under [`API_TIMEOUT`].
pub async fn timed<T>(
    what: &'static str,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(API_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|source| Error::Kube { what, source }),
        Err(_) => Err(Error::Timeout { what }),
    }
}

/// A write to an object that is already gone has nothing left to do.
pub fn gone_is_fine<T>(r: Result<T, Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(404) => Ok(()),
        Err(e) => Err(e),
    }
}
