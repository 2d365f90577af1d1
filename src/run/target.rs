//! The target of a run: an external URL, or the embedded reference server
//! started on loopback with the scenario's `[server]` table
//! (`scenario::ServerTable`) applied to `server::Settings`.
//!
//! Imports: `server`, `scenario`, `auth`.

use std::net::SocketAddr;

use super::RunError;
use crate::auth::Secret;
use crate::scenario::Scenario;
use crate::server::{self, Settings};

/// The server settings of the embedded server: the scenario's `[server]`
/// table over the defaults; the run's seed unless the table sets one.
pub(super) fn server_config(sc: &Scenario, secret: &Secret, seed: u64) -> Settings {
    let mut c = Settings::new(secret.clone());
    c.seed = sc.server.seed.unwrap_or(seed);
    c.envelope = sc.server.envelope;
    c.ready = sc.server.ready;
    c.naming = sc.server.naming.clone();
    c.thinking = sc.server.thinking;
    c.tools = sc.server.tools;
    c.event_delay = sc.server.event_delay;
    c.slowdown_per_minute = sc.server.slowdown_per_minute;
    c.faults = sc.server.faults.clone();
    c.capacity = sc.server.capacity;
    c.connect_limit = sc.server.connect_limit;
    c.stall = sc.server.stall;
    c.login_lifetime = sc.server.login_lifetime;
    c.heartbeat = sc.server.heartbeat;
    c.enforce_expiry = sc.server.enforce_token_expiry;
    c.platform = sc.server.platform.clone();
    c
}

/// The URL the users load, and the embedded server when there is one.
pub(super) struct Target {
    pub url: String,
    embedded: Option<server::RunningServer>,
}

impl Target {
    /// `external`, or the embedded server started on 127.0.0.1.
    pub async fn start(
        external: Option<String>,
        sc: &Scenario,
        secret: &Secret,
        seed: u64,
    ) -> Result<Target, RunError> {
        if let Some(url) = external {
            return Ok(Target {
                url,
                embedded: None,
            });
        }
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        let srv = server::spawn(server_config(sc, secret, seed), addr)
            .await
            .map_err(|e| {
                RunError::Aborted(format!("cannot start the embedded reference server: {e}"))
            })?;
        Ok(Target {
            url: srv.ws_url(),
            embedded: Some(srv),
        })
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Stops the embedded server; what it says it did (its truth counters).
    pub async fn finish(self) -> Option<serde_json::Value> {
        let srv = self.embedded?;
        let truth = srv.truth();
        srv.shutdown().await;
        serde_json::to_value(truth).ok()
    }
}
