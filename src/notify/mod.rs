//! Notifications of release decisions to Slack, PagerDuty, Microsoft Teams and webhooks
//! (docs/notifications.md): which decisions and to whom ([`record`], pure), what is sent
//! ([`payload`], pure), the configuration ([`config`], pure) and delivery ([`deliver`]).

pub mod config;
pub mod deliver;
pub mod payload;
pub mod record;

pub use deliver::{Notifier, Source};
