//! The `[server]` keys that make the embedded reference server behave like
//! one real platform: `profile` (a preset of `protocol::platform`, applied
//! before every other `[server]` key) and the platform options over it:
//! `refuse_aud`, `history_limit_max`, `login_identity`, `socket_identity`, `seq`,
//! `event_fields`, `auth_close`. Imports `protocol::platform` and the `doc`
//! readers.

use crate::protocol::platform;

use super::doc::{positive_u64, Obj};
use super::model::ServerTable;

/// Reads `profile` and the platform options into `s`.
pub(super) fn read_server_platform(tbl: &Obj<'_>, s: &mut ServerTable) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("profile") {
        match n.as_str() {
            Some(name) => match platform::preset(name) {
                Some(p) => {
                    s.envelope = p.envelope;
                    s.ready = p.ready;
                    s.heartbeat = p.heartbeat;
                    s.platform = p.options;
                }
                None => {
                    n.error(platform::unknown(name));
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    let o = &mut s.platform;
    if let Some(b) = tbl.bool("refuse_aud") {
        o.refuse_aud = b;
    }
    if let Some(b) = tbl.bool("seq") {
        o.seq = b;
    }
    if let Some(n) = tbl.get("history_limit_max") {
        match positive_u64(&n) {
            Some(v) => o.history_limit_max = Some(v as usize),
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("login_identity") {
        match n.as_str() {
            Some(u) if !u.is_empty() => o.login_identity = Some(u.to_string()),
            Some(_) => {
                n.error("the user every login is issued for, e.g. \"dev-user-001\"");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("socket_identity") {
        match n.as_str() {
            Some(u) if !u.is_empty() => o.socket_identity = Some(u.to_string()),
            Some(_) => {
                n.error("the user every socket is taken for, e.g. \"dev-user-001\"");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("event_fields") {
        ok &= n.parse_into(&mut o.fields);
    }
    if let Some(n) = tbl.get("auth_close") {
        match n.as_u64() {
            Some(c @ 1000..=4999) => o.auth_close = c as u16,
            Some(_) => {
                n.error("a close code is between 1000 and 4999");
                ok = false;
            }
            None => ok = false,
        }
    }
    ok
}
