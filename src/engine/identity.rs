//! Identity collapse: two simulated users that the server knows as the same
//! user (the same `sub` in their tokens, as with a dev login that makes
//! everyone `dev-user-001`, or for opaque tokens the same user id in their
//! ready frames; adopted in `socket.rs`). A minted token whose `sub` the
//! ready frame contradicts is not a shared identity but an
//! `identity_mismatch` violation ([`mismatch`]). Each user's events are judged against its
//! server identity, so no leak is counted between users sharing one; at the
//! end the run says once, per shared identity, which users share it and
//! that isolation was not checked between them. It does not fail the run.
//!
//! May import: `metrics` (observations), `auth`, `names` (not `shared.rs`
//! or `user.rs`, which hold it: `socket.rs` adopts a user's identity).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::metrics::ObsSender;

/// Stage of the failure reason that carries the note (`run/ending.rs`
/// turns it into a run note).
pub const IDENTITY_STAGE: &str = "identity";

/// Users listed by name in a note; more are counted.
const USERS_NAMED: usize = 3;

/// Server identity -> the simulated users that resolved to it.
#[derive(Default)]
pub(super) struct Identities {
    seen: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

/// The server identity a token names: its `sub` (unverified: chatload may
/// not hold the key), or `None` for an opaque token.
pub(super) fn token_identity(token: &str) -> Option<String> {
    crate::auth::unverified_claims(token)?
        .get("sub")?
        .as_str()
        .map(str::to_string)
}

impl Identities {
    /// Records that `user` is known to the server as `identity`.
    pub(super) fn record(&self, identity: &str, user: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(identity) {
            Some(users) => {
                if !users.contains(user) {
                    users.insert(user.to_string());
                }
            }
            None => {
                seen.insert(identity.to_string(), BTreeSet::from([user.to_string()]));
            }
        }
    }

    /// One note per identity shared by several users, and
    /// `identities.shared` (the users concerned).
    pub(super) fn report(&self, obs: &ObsSender) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (identity, users) in seen.iter().filter(|(_, u)| u.len() > 1) {
            obs.count_n(crate::names::IDENTITIES_SHARED, users.len() as u64);
            obs.failure(IDENTITY_STAGE, note(identity, users));
        }
    }
}

/// A ready frame that names another user than the minted token's `sub`: one
/// `identity_mismatch` violation per socket.
pub(super) fn mismatch(obs: &ObsSender, user: &str, sub: &str, ready: &str) {
    let v = crate::protocol::validate::Violation::new(
        "identity_mismatch",
        "ready",
        format!(
            "the ready frame of {user} names user {ready}, not its token's sub {sub}: the server did not take the token's identity"
        ),
    );
    let who = super::session::Who {
        user_id: user,
        run_id: None,
    };
    super::session::note_violation(obs, &v, ready, &who);
}

/// `users chatload-user-00000, ... (20 users) share identity dev-user-001: ...`
fn note(identity: &str, users: &BTreeSet<String>) -> String {
    let named: Vec<&str> = users.iter().take(USERS_NAMED).map(String::as_str).collect();
    let rest = users.len() - named.len();
    let more = if rest > 0 {
        format!(" and {rest} more")
    } else {
        String::new()
    };
    format!(
        "{} users ({}{more}) share identity {identity}: isolation cannot be checked between them, and no leak was counted between them",
        users.len(),
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_identity_is_named_once_with_its_users() {
        let ids = Identities::default();
        for u in ["u1", "u2", "u3", "u4", "u1"] {
            ids.record("dev-user-001", u);
        }
        ids.record("alone", "u9");
        let seen = ids.seen.lock().unwrap();
        let shared: Vec<String> = seen
            .iter()
            .filter(|(_, u)| u.len() > 1)
            .map(|(i, u)| note(i, u))
            .collect();
        assert_eq!(
            shared,
            ["4 users (u1, u2, u3 and 1 more) share identity dev-user-001: isolation cannot be checked between them, and no leak was counted between them"]
        );
    }
}
