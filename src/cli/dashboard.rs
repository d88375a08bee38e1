//! `kubectl sluice dashboard`: a local web page of the Rollouts in scope, kept current by
//! watches and pushed to the browser as Server-Sent Events, with buttons that steer a release
//! the way `kubectl sluice promote|abort|...` does. It talks to the API server with the user's
//! own credentials, so it shows and does what their RBAC allows; it listens on loopback unless
//! told otherwise, and writes nothing until a button is pressed and confirmed.

pub mod routes;
pub mod view;
pub mod watch;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource};

use crate::api::analysis::AnalysisRun;
use crate::api::rollout::Rollout;
use crate::cli::cluster::{Cluster, ClusterArgs};
use watch::{Scope, Watches};

/// Time allowed for each call to the API server while starting.
const START_LIMIT: Duration = Duration::from_secs(15);

/// Time open pages get to go away after Ctrl-C before the server stops anyway.
const STOP_LIMIT: Duration = Duration::from_secs(3);

#[derive(clap::Args, Debug, Clone)]
pub struct DashboardArgs {
    /// Port to listen on; 0 picks a free one (the address is printed).
    #[arg(long, default_value_t = 3100)]
    pub port: u16,
    /// Address to listen on (default 127.0.0.1). The page acts with your credentials: anyone
    /// who can reach it can see your Rollouts and press promote or abort. So it listens on
    /// loopback unless an address is given here, and says so when it is not a loopback one.
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// Show the Rollouts of every namespace, not only the namespace of -n or the context.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Why the dashboard cannot start (or stopped), each something a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    #[error("cannot reach the API server: {0}")]
    Unreachable(String),
    #[error(
        "forbidden: you may not {verb} {resource} in {scope}{why}; ask for a Role that grants it, or use -n for a namespace where you may"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        scope: String,
        why: String,
    },
    #[error(
        "the API server does not serve {0}: install Sluice's CRDs (kubectl sluice crds | kubectl apply --server-side -f -)"
    )]
    NotInstalled(&'static str),
    #[error("reading {resource}: {message}")]
    Api {
        resource: &'static str,
        message: String,
    },
    #[error(
        "port {port} on {address} is in use (another dashboard?): choose another with --port, or --port 0 for a free one"
    )]
    PortInUse { address: IpAddr, port: u16 },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving the dashboard: {0}")]
    Serve(std::io::Error),
}

impl DashboardError {
    /// A short reason, for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            DashboardError::Config(_) => "Config",
            DashboardError::Unreachable(_) => "Unreachable",
            DashboardError::Forbidden { .. } => "Forbidden",
            DashboardError::NotInstalled(_) => "NotInstalled",
            DashboardError::Api { .. } => "ApiError",
            DashboardError::PortInUse { .. } => "PortInUse",
            DashboardError::Listen { .. } => "Listen",
            DashboardError::Serve(_) => "Serve",
        }
    }
}

/// The plugin's entry point: connects with the kubeconfig, runs the dashboard until Ctrl-C,
/// and says what went wrong when it cannot.
pub fn main(prog: &str, args: DashboardArgs, cluster: &ClusterArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{prog}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = rt.block_on(async {
        let cl = tokio::time::timeout(START_LIMIT, Cluster::connect(cluster))
            .await
            .map_err(|_| {
                DashboardError::Config(format!(
                    "reading it took more than {} s",
                    START_LIMIT.as_secs()
                ))
            })?
            .map_err(|e| match e {
                crate::cli::cluster::CliError::Config(why) => DashboardError::Config(why),
                other => DashboardError::Config(other.to_string()),
            })?;
        let server = cl.server.clone();
        let watch_timeout = cl.watch_timeout();
        run(args, cl.client, Some(cl.namespace), watch_timeout)
            .await
            .map_err(|e| match e {
                DashboardError::Unreachable(why) => {
                    DashboardError::Unreachable(format!("{server}: {why}"))
                }
                other => other,
            })
    });
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prog}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the dashboard for the Rollouts of `namespace` (the client's default namespace when
/// `None`), or of every namespace with `--all-namespaces`, until Ctrl-C or SIGTERM. The API
/// server ends each watch after `watch_timeout` seconds, before the client's read timeout would
/// break it on a quiet stream (see [`crate::cli::cluster::Cluster::watch_timeout`]).
pub async fn run(
    args: DashboardArgs,
    client: Client,
    namespace: Option<String>,
    watch_timeout: u32,
) -> Result<(), DashboardError> {
    let scope = if args.all_namespaces {
        Scope::All
    } else {
        Scope::Namespace(namespace.unwrap_or_else(|| client.default_namespace().to_string()))
    };
    check_access(&client, &scope).await?;

    let address = args.address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let wanted = SocketAddr::new(address, args.port);
    let listener = tokio::net::TcpListener::bind(wanted)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => DashboardError::PortInUse {
                address,
                port: args.port,
            },
            _ => DashboardError::Listen {
                address: wanted,
                source,
            },
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| DashboardError::Listen {
            address: wanted,
            source,
        })?;

    let (watches, driver) = Watches::start(&client, &scope, watch_timeout);
    let feeding = tokio::spawn(driver);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let hosts = address.is_loopback().then(|| loopback_hosts(local));
    let shared = Arc::new(routes::Shared {
        client,
        scope: scope.clone(),
        watches,
        stopping,
        hosts,
    });
    let app = routes::router(shared);

    println!("dashboard: http://{}/", url_host(local));
    if !address.is_loopback() {
        eprintln!(
            "dashboard: listening on {local}, not loopback: whoever reaches it sees {} and can steer its Rollouts with your credentials",
            scope.describe()
        );
    }
    eprintln!("dashboard: showing {}; Ctrl-C stops it", scope.describe());

    let mut stop_signal = stop.subscribe();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop_signal.wait_for(|s| *s).await;
    });
    let mut serving = tokio::spawn(async move { server.await });
    let served = |r: Result<std::io::Result<()>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DashboardError::Serve(e)),
        Err(e) => Err(DashboardError::Serve(std::io::Error::other(e))),
    };
    let outcome = tokio::select! {
        r = &mut serving => served(r),
        () = stop_requested() => {
            eprintln!("dashboard: stopping");
            let _ = stop.send(true);
            // Open pages end their event streams on `stop`; the server waits for them a while.
            match tokio::time::timeout(STOP_LIMIT, &mut serving).await {
                Ok(r) => served(r),
                Err(_) => Ok(()),
            }
        }
    };
    feeding.abort();
    outcome
}

/// An error and its causes, `outer: inner: innermost`, so "connection refused" is not lost
/// behind "client error (Connect)".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Ctrl-C, or SIGTERM where there is one.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `127.0.0.1:8080`, `[::1]:8080`.
fn url_host(addr: SocketAddr) -> String {
    addr.to_string()
}

/// The `Host` values a browser sends for a loopback server on `addr`'s port.
fn loopback_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        addr.to_string(),
    ]
}

/// Lists each kind the dashboard watches (one object) and asks whether it may watch it, so a
/// missing permission or CRD is told now, in words, instead of as a page that stays empty.
async fn check_access(client: &Client, scope: &Scope) -> Result<(), DashboardError> {
    probe::<Rollout>(client, scope, "rollouts.sluice.dev", true).await?;
    probe::<AnalysisRun>(client, scope, "analysisruns.sluice.dev", true).await?;
    probe::<ReplicaSet>(client, scope, "replicasets.apps", false).await?;
    probe::<Event>(client, scope, "events.events.k8s.io", false).await?;
    Ok(())
}

async fn probe<K>(
    client: &Client,
    scope: &Scope,
    resource: &'static str,
    custom: bool,
) -> Result<(), DashboardError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = scope.api(client);
    let listed = tokio::time::timeout(
        START_LIMIT,
        api.list_metadata(&ListParams::default().limit(1)),
    )
    .await
    .map_err(|_| {
        DashboardError::Unreachable(format!(
            "no answer within {} s (listing {resource})",
            START_LIMIT.as_secs()
        ))
    })?;
    match listed {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(DashboardError::Forbidden {
                verb: "list",
                resource,
                scope: scope.describe(),
                why: format!(" ({})", e.message),
            });
        }
        Err(kube::Error::Api(e)) if e.code == 404 && custom => {
            return Err(DashboardError::NotInstalled(resource));
        }
        Err(kube::Error::Api(e)) => {
            return Err(DashboardError::Api {
                resource,
                message: e.message,
            });
        }
        Err(e) => return Err(DashboardError::Unreachable(chain(&e))),
    }
    if !may(
        client,
        scope,
        K::group(&()).as_ref(),
        K::plural(&()).as_ref(),
        "watch",
    )
    .await?
    {
        return Err(DashboardError::Forbidden {
            verb: "watch",
            resource,
            scope: scope.describe(),
            why: String::new(),
        });
    }
    Ok(())
}

/// Asks the API server whether the user may `verb` the resource in scope.
async fn may(
    client: &Client,
    scope: &Scope,
    group: &str,
    plural: &str,
    verb: &str,
) -> Result<bool, DashboardError> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(plural.into()),
                verb: Some(verb.into()),
                namespace: match scope {
                    Scope::Namespace(ns) => Some(ns.clone()),
                    Scope::All => None,
                },
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = tokio::time::timeout(START_LIMIT, api.create(&PostParams::default(), &review))
        .await
        .map_err(|_| {
            DashboardError::Unreachable(format!(
                "no answer within {} s (asking whether you may {verb} {plural})",
                START_LIMIT.as_secs()
            ))
        })?;
    match answer {
        Ok(review) => Ok(review.status.is_some_and(|s| s.allowed)),
        // The question itself refused: the watch will say whether it may.
        Err(kube::Error::Api(_)) => Ok(true),
        Err(e) => Err(DashboardError::Unreachable(chain(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DashboardArgs,
    }

    fn parse(argv: &[&str]) -> DashboardArgs {
        let mut all = vec!["dashboard"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all).expect("arguments").args
    }

    #[test]
    fn loopback_by_default_and_any_address_only_when_given() {
        let a = parse(&[]);
        assert_eq!((a.port, a.address, a.all_namespaces), (3100, None, false));
        let a = parse(&["--port", "0", "-A", "--address", "0.0.0.0"]);
        assert_eq!(a.port, 0);
        assert!(a.all_namespaces);
        assert_eq!(a.address, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert!(
            Cli::try_parse_from(["dashboard", "--address", "localhost"]).is_err(),
            "an address, not a name to resolve"
        );
    }

    #[test]
    fn a_loopback_server_answers_to_loopback_names_on_its_port() {
        let hosts = loopback_hosts(SocketAddr::from(([127, 0, 0, 1], 4321)));
        assert!(hosts.contains(&"127.0.0.1:4321".to_string()));
        assert!(hosts.contains(&"localhost:4321".to_string()));
        assert!(!hosts.iter().any(|h| h.ends_with(":80")));
    }

    #[test]
    fn the_events_watch_selects_sluices_objects() {
        assert_eq!(
            watch::events_selector(),
            "regarding.apiVersion=sluice.dev/v1alpha1"
        );
        assert_eq!(Scope::All.describe(), "all namespaces");
        assert_eq!(Scope::Namespace("shop".into()).describe(), "namespace shop");
    }

    #[test]
    fn an_error_chain_keeps_its_innermost_cause() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = kube::Error::Service(Box::new(inner));
        let text = chain(&outer);
        assert!(text.contains("connection refused"), "{text}");
    }
}
