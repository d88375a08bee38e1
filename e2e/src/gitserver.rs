//! A git server on loopback for the GitOps loop: Debian's `git http-backend` (git's own
//! smart HTTP server, a CGI program) behind a small HTTP server, serving the bare
//! repositories under one directory read-only, as a GitRepository's `url` reaches them
//! (`http://127.0.0.1:PORT/<name>.git`). Tests commit in a work tree and push to the bare
//! repository by path ([`Repo`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

/// Each request's time limit (a fetch of a small repository takes milliseconds).
const REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// The HTTP server; stops on drop.
pub struct GitServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitServer {
    /// Serves the bare repositories under `root` on a free loopback port.
    pub async fn start(root: &Path) -> anyhow::Result<GitServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(cgi)
            .with_state(root.to_path_buf());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(GitServer {
            url: format!("http://{addr}"),
            task,
        })
    }
}

/// One request through `git http-backend`.
async fn cgi(
    State(root): State<PathBuf>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match tokio::time::timeout(
        REQUEST_LIMIT,
        backend(&root, &method, &uri, &headers, &body),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "git http-backend took too long",
        )
            .into_response(),
    }
}

async fn backend(
    root: &Path,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> anyhow::Result<Response> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting git http-backend (Debian's git)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).await?;
    }
    let out = child.wait_with_output().await?;
    response(&out.stdout).with_context(|| {
        format!(
            "git http-backend {} {uri}: {}",
            method,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A CGI program's output as an HTTP response: its headers (`Status:` the status), a blank
/// line, the body.
fn response(out: &[u8]) -> anyhow::Result<Response> {
    let (head, body) = split_head(out).context("no blank line after the CGI headers")?;
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    Ok((status, headers, body.to_vec()).into_response())
}

/// The headers and the body of CGI output (lines end in `\r\n` or `\n`).
fn split_head(out: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let (i, n) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 < b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&out[..i], &out[i + n..]))
}

/// A bare repository under the server's root and a work tree that commits to it.
pub struct Repo {
    /// `<root>/<name>.git`.
    pub bare: PathBuf,
    pub work: PathBuf,
    /// The path a GitRepository's `url` names under the server (`/<name>.git`).
    pub path: String,
}

impl Repo {
    /// Creates `<root>/<name>.git` (branch `main`) and its work tree `<root>/<name>`.
    pub async fn init(root: &Path, name: &str) -> anyhow::Result<Repo> {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(name);
        std::fs::create_dir_all(&work)?;
        git(
            root,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                &bare.to_string_lossy(),
            ],
        )
        .await?;
        git(&work, &["init", "--quiet", "--initial-branch=main"]).await?;
        git(&work, &["remote", "add", "origin", &bare.to_string_lossy()]).await?;
        Ok(Repo {
            bare,
            work,
            path: format!("/{name}.git"),
        })
    }

    /// Writes `files` (path relative to the work tree, content), commits them all with
    /// `message` and pushes; returns the commit's hash.
    pub async fn commit(&self, files: &[(&str, String)], message: &str) -> anyhow::Result<String> {
        for (path, content) in files {
            let p = self.work.join(path);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
        }
        git(&self.work, &["add", "--all"]).await?;
        self.commit_and_push(&["commit", "--quiet", "-m", message])
            .await
    }

    /// Reverts commit `hash` (a new commit undoing it) and pushes; returns the new hash.
    pub async fn revert(&self, hash: &str) -> anyhow::Result<String> {
        self.commit_and_push(&["revert", "--no-edit", hash]).await
    }

    async fn commit_and_push(&self, args: &[&str]) -> anyhow::Result<String> {
        git(&self.work, args).await?;
        git(&self.work, &["push", "--quiet", "origin", "main"]).await?;
        let head = git(&self.work, &["rev-parse", "HEAD"]).await?;
        Ok(head.trim().to_string())
    }
}

/// Runs git in `dir` as a fixed author (no global configuration read); its stdout.
pub async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        REQUEST_LIMIT,
        tokio::process::Command::new("git")
            .args([
                "-c",
                "user.name=Sluice tests",
                "-c",
                "user.email=tests@sluice.dev",
            ])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("git {args:?} took over a minute"))??;
    if !out.status.success() {
        bail!(
            "git {args:?} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_output_splits_at_the_first_blank_line() {
        let (h, b) =
            split_head(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno\n\nrepo")
                .expect("split");
        assert_eq!(h, b"Status: 404 Not Found\r\nContent-Type: text/plain");
        assert_eq!(b, b"no\n\nrepo");
        let (h, b) = split_head(b"Content-Type: x\n\nbody").expect("split");
        assert_eq!((h, b), (&b"Content-Type: x"[..], &b"body"[..]));
        assert!(split_head(b"no blank line").is_none());
    }

    /// A clone through the server sees what was pushed.
    #[tokio::test]
    async fn a_clone_over_http_sees_each_push() -> anyhow::Result<()> {
        let root = std::env::temp_dir().join(format!("sluice-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        let server = GitServer::start(&root).await?;
        let repo = Repo::init(&root, "shop").await?;
        let first = repo.commit(&[("app/a.txt", "one".into())], "one").await?;
        let clone = root.join("clone");
        let url = format!("{}{}", server.url, repo.path);
        git(&root, &["clone", "--quiet", &url, &clone.to_string_lossy()]).await?;
        assert_eq!(std::fs::read_to_string(clone.join("app/a.txt"))?, "one");
        let second = repo.commit(&[("app/a.txt", "two".into())], "two").await?;
        git(&clone, &["pull", "--quiet", "--ff-only"]).await?;
        assert_eq!(std::fs::read_to_string(clone.join("app/a.txt"))?, "two");
        repo.revert(&second).await?;
        git(&clone, &["pull", "--quiet", "--ff-only"]).await?;
        assert_eq!(std::fs::read_to_string(clone.join("app/a.txt"))?, "one");
        assert_ne!(first, second);
        let missing = reqwest::get(format!(
            "{}/nothing.git/info/refs?service=git-upload-pack",
            server.url
        ))
        .await?;
        assert_eq!(missing.status().as_u16(), 404);
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }
}
