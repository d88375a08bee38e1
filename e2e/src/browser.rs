//! A real headless Chromium driven through ChromeDriver's WebDriver HTTP API (W3C), for tests
//! of web pages: open a URL, read and click elements by CSS selector, run a script, take a
//! screenshot. Each [`Browser`] has its own chromedriver on a free port and its own fresh
//! profile directory; both go away on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use serde_json::{Value, json};

use crate::wait_for;

/// Debian's Chromium and its WebDriver (`apt-get install chromium chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which WebDriver returns an element's id.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Time allowed for one WebDriver command.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// Time allowed for a new session: Chromium's first start reads its large binary from disk,
/// which on a loaded machine with a cold page cache has taken over 20 s.
const SESSION_LIMIT: Duration = Duration::from_secs(120);

/// One browser session.
pub struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    /// `127.0.0.1:PORT` of chromedriver.
    addr: String,
    session: String,
    profile: PathBuf,
    pub log: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Fails, saying how to install
    /// them, when either is missing.
    pub async fn start() -> anyhow::Result<Self> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                bail!(
                    "{bin} is missing: the browser tests need Debian's chromium and chromium-driver; run scripts/deps.sh"
                );
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let profile = std::env::temp_dir().join(format!("sluice-chromium-{unique}"));
        std::fs::create_dir_all(&profile)?;
        let log = std::env::temp_dir().join(format!("sluice-chromedriver-{unique}.log"));
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver")?;
        let http = reqwest::Client::builder()
            .timeout(COMMAND_LIMIT)
            .no_proxy()
            .build()?;
        let addr = format!("127.0.0.1:{port}");
        let mut b = Browser {
            driver,
            http,
            addr,
            session: String::new(),
            profile,
            log,
        };
        let status_url = format!("http://{}/status", b.addr);
        let http = b.http.clone();
        wait_for("chromedriver to answer", Duration::from_secs(30), || {
            let http = http.clone();
            let url = status_url.clone();
            async move {
                let Ok(r) = http.get(&url).send().await else {
                    return Ok(None);
                };
                let v: Value = serde_json::from_slice(&r.bytes().await?)?;
                Ok((v["value"]["ready"] == json!(true)).then_some(()))
            }
        })
        .await?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1360,1000",
                    format!("--user-data-dir={}", b.profile.display()),
                ]
            }
        }}});
        let v = b
            .command_within("POST", "/session", Some(caps), SESSION_LIMIT)
            .await?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {v}"))?
            .to_string();
        Ok(b)
    }

    /// Sends one WebDriver command; returns its `value`.
    async fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.command_within(method, path, body, COMMAND_LIMIT).await
    }

    async fn command_within(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let url = format!("http://{}{path}", self.addr);
        let req = match method {
            "POST" => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
            "DELETE" => self.http.delete(&url),
            _ => self.http.get(&url),
        };
        let res = req
            .timeout(limit)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let v: Value = serde_json::from_slice(&res.bytes().await?)
            .with_context(|| format!("{method} {path}: not JSON"))?;
        if !status.is_success() {
            bail!(
                "{method} {path}: {status}: {} {}",
                v["value"]["error"],
                v["value"]["message"]
            );
        }
        Ok(v["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.command(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        )
        .await
        .map(|_| ())
    }

    /// The id of the first element matching `css`, if there is one.
    pub async fn find(&self, css: &str) -> anyhow::Result<Option<String>> {
        let body = json!({"using": "css selector", "value": css});
        let url = format!("http://{}{}", self.addr, self.session_path("/element"));
        let res = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = res.status();
        let v: Value = serde_json::from_slice(&res.bytes().await?)?;
        if status.as_u16() == 404 && v["value"]["error"] == json!("no such element") {
            return Ok(None);
        }
        if !status.is_success() {
            bail!("finding {css}: {status}: {}", v["value"]);
        }
        Ok(v["value"][ELEMENT].as_str().map(str::to_string))
    }

    /// The rendered text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> anyhow::Result<Option<String>> {
        let Some(id) = self.find(css).await? else {
            return Ok(None);
        };
        match self
            .command(
                "GET",
                &self.session_path(&format!("/element/{id}/text")),
                None,
            )
            .await
        {
            Ok(v) => Ok(v.as_str().map(str::to_string)),
            // The page re-rendered between finding and reading: not there now.
            Err(e) if e.to_string().contains("stale element") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until the element matching `css` has text satisfying `check`; returns it.
    pub async fn wait_text(
        &self,
        css: &str,
        what: &str,
        limit: Duration,
        check: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        wait_for(what, limit, || async {
            Ok(self.text(css).await?.filter(|t| check(t)))
        })
        .await
        .with_context(|| format!("the element {css}"))
    }

    /// Clicks the first element matching `css`. A page that re-renders between finding the
    /// element and clicking it (a stale element) is looked up again, for up to 10 s.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        wait_for(
            &format!("{css} to click"),
            Duration::from_secs(10),
            || async {
                let id = self
                    .find(css)
                    .await?
                    .ok_or_else(|| anyhow!("no element {css} to click"))?;
                let path = self.session_path(&format!("/element/{id}/click"));
                match self.command("POST", &path, Some(json!({}))).await {
                    Ok(_) => Ok(Some(())),
                    Err(e) if e.to_string().contains("stale element") => Ok(None),
                    Err(e) => Err(e),
                }
            },
        )
        .await
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.command(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Writes a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let v = self
            .command("GET", &self.session_path("/screenshot"), None)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().ok_or_else(|| anyhow!("no screenshot data"))?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Writes a PNG of the whole page to `path`: the window is made as tall as the page for
    /// the shot (at most 8000 pixels), then sized back.
    pub async fn screenshot_page(&self, path: &Path) -> anyhow::Result<()> {
        let script = "return [window.outerWidth, window.outerHeight, window.innerHeight, \
                      document.documentElement.scrollHeight];";
        let v = self.execute(script, json!([])).await?;
        let n = |i: usize| v[i].as_u64().unwrap_or(0) as u32;
        let (width, height, inner, page) = (n(0), n(1), n(2), n(3));
        let chrome = height.saturating_sub(inner);
        self.resize(width, (page + chrome).clamp(height, 8000))
            .await?;
        let shot = self.screenshot(path).await;
        self.resize(width, height).await?;
        shot
    }

    /// Sizes the window (the screenshot's size).
    pub async fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.command(
            "POST",
            &self.session_path("/window/rect"),
            Some(json!({"width": width, "height": height})),
        )
        .await
        .map(|_| ())
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver then stops its Chromium) with a plain blocking request,
    /// then stops chromedriver and removes the profile.
    fn drop(&mut self) {
        if !self.session.is_empty()
            && let Ok(mut s) = TcpStream::connect(&self.addr)
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.session, self.addr
            );
            if s.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
            }
        }
        let _ = self.driver.start_kill();
        // A Chromium whose session never started (or whose chromedriver died) outlives its
        // chromedriver; its processes are the ones started with this Browser's own profile.
        for pid in processes_using(&self.profile) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The ids of the processes started with `--user-data-dir=<profile>` (Linux `/proc`).
fn processes_using(profile: &Path) -> Vec<u32> {
    let flag = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == flag.as_bytes()))
        })
        .collect()
}
