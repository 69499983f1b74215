//! The region's [`Authority`] from its config: the `[[auth.principals]]`, the console's
//! tokens as principals (`admin_tokens`: the whole cluster; `read_tokens`: reading), and,
//! in enforce mode with none of these, the admin credential the node makes for itself at
//! its first start (stored 0600 in the data dir, printed once). Open mode is logged loudly.

use std::sync::Arc;

use anyhow::{Context, Result};
use auth::permission::GrantSpec;
use auth::{Action, Authority, Principal};
use broker::Broker;
use console_api::api::auth::ConsoleAuth;
use tokio_util::sync::CancellationToken;

use crate::config::{AuthMode, NodeConfig};

/// What every surface checks callers with.
pub struct Security {
    pub authority: Arc<Authority>,
    pub console: ConsoleAuth,
}

fn grant(resource: &str, actions: &[Action]) -> GrantSpec {
    GrantSpec {
        resource: resource.into(),
        actions: actions.to_vec(),
    }
}

pub fn build(config: &NodeConfig) -> Result<Security> {
    let mut principals: Vec<Principal> = config
        .auth
        .principals
        .iter()
        .map(|p| p.check())
        .collect::<Result<_, _>>()?;
    let admin = [grant("cluster", &[Action::Admin])];
    let read = [
        grant("task:*", &[Action::Read]),
        grant("group:*", &[Action::Read]),
        grant("topic:*", &[Action::Describe]),
    ];
    for (i, token) in config.console.admin_tokens.iter().enumerate() {
        principals.push(Principal::token(
            format!("console-admin-{i}"),
            token,
            &admin,
        )?);
    }
    for (i, token) in config.console.read_tokens.iter().enumerate() {
        principals.push(Principal::token(format!("console-read-{i}"), token, &read)?);
    }
    let open = config.auth.mode == AuthMode::Open;
    let console_anonymous = open && principals.is_empty();
    if open {
        tracing::warn!(
            event = "open_auth_mode",
            "[auth] mode = \"open\": callers without credentials may produce, consume, create and delete topics and change tasks; use it for development on loopback only"
        );
    } else if principals.is_empty() {
        let made = auth::admin::admin_credential(&config.region.data_dir)
            .context("the admin credential ([auth] names no principal)")?;
        if made.new {
            // Shown once, on the terminal of the first start; the file keeps it.
            eprintln!(
                "georouter: no principal is configured, so this node made an admin credential (shown once; stored in {}):\n  access key {}\n  secret     {}\n  (Authorization: Bearer {}:<secret>; RocketMQ SDKs: Credentials(access key, secret))",
                made.path.display(),
                made.spec.access_key,
                made.spec.secret,
                made.spec.access_key,
            );
        }
        tracing::info!(file = %made.path.display(), access_key = %made.spec.access_key, "admin credential in use");
        principals.push(made.spec.check()?);
    }
    let authority = Arc::new(Authority::new(principals, open));
    Ok(Security {
        console: ConsoleAuth {
            authority: authority.clone(),
            anonymous: console_anonymous,
        },
        authority,
    })
}

/// Makes the principals changed at run time (the broker's principal book, shared with
/// every region) the authority's, now.
pub fn load_shared(broker: &Broker, authority: &Authority) {
    let principals = broker
        .principals()
        .live()
        .into_iter()
        .filter_map(|record| {
            record
                .spec
                .check()
                .inspect_err(|e| tracing::error!(event = "shared_principal_invalid", error = %e, "a shared principal is not valid here; ignored"))
                .ok()
        })
        .collect();
    authority.set_shared(principals);
}

/// Keeps the authority's run-time principals those of the book, after every change, until
/// `stop`.
pub async fn follow_shared(
    broker: Arc<Broker>,
    authority: Arc<Authority>,
    stop: CancellationToken,
) {
    let mut changes = broker.principals().subscribe();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        load_shared(&broker, &authority);
    }
}
