//! The reference server's socket authentication: a ticket (from `POST
//! /api/v1/ws-ticket`) or a token, and the user the socket is taken for
//! (`platform::socket_user`: an identity-ignoring server maps every socket
//! to one user).
//!
//! Imports only `auth` (through the state's policy) and its own folder.

use std::collections::HashMap;
use std::time::SystemTime;

use super::ServerState;

/// The socket's user and its token's expiry, or the auth-failure reason.
pub(super) type Auth = Result<(String, Option<u64>), String>;

/// A ticket (consumed even when a token is presented too) wins over the token.
pub(super) fn authenticate(
    st: &ServerState,
    token: Option<&str>,
    query: &HashMap<String, String>,
) -> Auth {
    let ticket_user = query.get("ticket").map(|t| {
        let mut tickets = st.tickets.lock().unwrap_or_else(|e| e.into_inner());
        match tickets.remove(t) {
            Some((user, exp)) if exp > std::time::Instant::now() => Ok((user, None)),
            Some(_) => Err("AUTH_FAILED: ticket expired".to_string()),
            None => Err("AUTH_FAILED: unknown or used ticket".to_string()),
        }
    });
    match (token, ticket_user) {
        (_, Some(t)) => t,
        (None, None) => Err("NO_TOKEN: no token presented".to_string()),
        (Some(t), None) => st
            .policy
            .verify(t, SystemTime::now())
            .map(|c| {
                (
                    super::platform::socket_user(&st.config.platform, c.sub),
                    Some(c.exp),
                )
            })
            .map_err(|e| format!("AUTH_FAILED: {e}")),
    }
}
