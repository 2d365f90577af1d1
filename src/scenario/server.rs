//! `[server]`: the embedded reference server's settings as written
//! ([`ServerTable`]); `run/` applies them to `server::Settings`. Imports
//! `protocol::dialect`/`faults` and the `doc` readers, never `server`.

use std::time::Duration;

use crate::protocol::dialect::{Envelope, Naming, ReadyStyle};
use crate::protocol::faults::FaultPlan;

use super::doc::{f64_where, Node, Obj};
use super::model::ServerTable;

/// A `[min, max]` pair of whole numbers.
pub(super) fn read_range_u32(n: &Node<'_>) -> Option<(u32, u32)> {
    let items = n.as_array()?;
    if items.len() != 2 {
        n.error("must be [min, max]");
        return None;
    }
    let a = items[0].as_u64()? as u32;
    let b = items[1].as_u64()? as u32;
    if a > b {
        n.error("min must not exceed max");
        return None;
    }
    Some((a, b))
}

/// `[server]`: the embedded reference server's settings over its defaults.
pub(super) fn read_server(o: &Obj<'_>) -> Option<ServerTable> {
    let mut s = defaults();
    let Some(tbl) = o.obj("server") else {
        return Some(s);
    };
    let mut ok = true;
    // The preset first: every other key overrides it.
    ok &= super::server_platform::read_server_platform(&tbl, &mut s);
    s.seed = tbl.u64("seed");
    if let Some(n) = tbl.get("envelope") {
        ok &= n.parse_into(&mut s.envelope);
    }
    if let Some(n) = tbl.get("ready") {
        ok &= n.parse_into(&mut s.ready);
    }
    if let Some(nm) = tbl.obj("naming") {
        read_naming(nm, &mut s.naming);
    }
    if let Some(n) = tbl.get("slowdown_per_minute") {
        match f64_where(&n, |v| v >= 0.0, "must not be negative") {
            Some(v) => s.slowdown_per_minute = v,
            None => ok = false,
        }
    }
    ok &= read_limits(&tbl, &mut s);
    if let Some(b) = tbl.bool("enforce_token_expiry") {
        s.enforce_token_expiry = b;
    }
    ok &= read_stall(&tbl, &mut s);
    ok &= read_ranges(&tbl, &mut s);
    ok &= read_faults(&tbl, &mut s);
    tbl.finish();
    ok.then_some(s)
}

/// The reference server's settings when `[server]` does not change them.
fn defaults() -> ServerTable {
    ServerTable {
        seed: None,
        envelope: Envelope::Data,
        ready: ReadyStyle::Established,
        naming: Naming::default(),
        thinking: (1, 2),
        tools: (0, 2),
        event_delay: (Duration::from_millis(5), Duration::from_millis(25)),
        slowdown_per_minute: 0.0,
        faults: FaultPlan::default(),
        capacity: None,
        connect_limit: None,
        stall: None,
        login_lifetime: Duration::from_secs(900),
        heartbeat: None,
        enforce_token_expiry: false,
        platform: Default::default(),
    }
}

/// `[server.naming]`: the names the server's frames use.
fn read_naming(nm: Obj<'_>, naming: &mut Naming) {
    if let Some(t) = nm.str("type_field") {
        naming.type_field = t;
    }
    if let Some(t) = nm.str("run_id_field") {
        naming.run_id_field = t;
    }
    if let Some(ev) = nm.obj("events") {
        for (k, v, _) in ev.entries() {
            if let Some(t) = v.as_str() {
                naming.events.insert(k, t.to_string());
            }
        }
        ev.finish();
    }
    nm.finish();
}

/// `[server.capacity]`, `login_lifetime` and `heartbeat`.
fn read_limits(tbl: &Obj<'_>, s: &mut ServerTable) -> bool {
    let mut ok = true;
    if let Some(c) = tbl.obj("capacity") {
        let runs = c.require("runs").and_then(|n| {
            let v = n.as_u64()?;
            if v == 0 {
                n.error("must be at least 1");
                return None;
            }
            Some(v as usize)
        });
        let queue = c.u64("queue").unwrap_or(0) as usize;
        c.finish();
        match runs {
            Some(runs) => s.capacity = Some(crate::protocol::faults::Capacity { runs, queue }),
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("connect_limit") {
        let mut limit = crate::protocol::connect_limit::ConnectLimit { per_second: 1 };
        ok &= n.parse_into(&mut limit);
        s.connect_limit = Some(limit);
    }
    if let Some(n) = tbl.get("login_lifetime") {
        match n.as_duration() {
            Some(d) if d >= Duration::from_secs(1) => s.login_lifetime = d,
            Some(_) => {
                n.error("must be at least 1s (tokens carry whole seconds)");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("heartbeat") {
        match n.as_duration() {
            Some(d) if !d.is_zero() => s.heartbeat = Some(d),
            Some(_) => {
                n.error("must be longer than zero");
                ok = false;
            }
            None => ok = false,
        }
    }
    ok
}

/// `[server.stall]`: the server stops answering for `for` every `every`.
fn read_stall(tbl: &Obj<'_>, s: &mut ServerTable) -> bool {
    let mut ok = true;
    if let Some(st) = tbl.obj("stall") {
        let every = st.require("every").and_then(|n| n.as_duration());
        let for_node = st.require("for");
        let length = for_node.as_ref().and_then(|n| n.as_duration());
        match (every, length, &for_node) {
            (Some(every), Some(length), Some(n)) if length >= every || length.is_zero() => {
                n.error(if length.is_zero() {
                    "must be longer than zero (a stall of 0s stalls nothing)"
                } else {
                    "the stall must be shorter than its period (`every`)"
                });
                ok = false;
            }
            (Some(every), Some(length), _) => {
                s.stall = Some(crate::protocol::faults::Stall { every, length })
            }
            _ => ok = false,
        }
        st.finish();
    }
    ok
}

/// `thinking`, `tools` and `event_delay`: `[min, max]` ranges.
fn read_ranges(tbl: &Obj<'_>, s: &mut ServerTable) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("thinking") {
        match read_range_u32(&n) {
            Some(r) => s.thinking = r,
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("tools") {
        match read_range_u32(&n) {
            Some(r) => s.tools = r,
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("event_delay") {
        let pair = n.as_array().and_then(|items| {
            if items.len() != 2 {
                n.error("must be [min, max], e.g. [\"5ms\", \"25ms\"]");
                return None;
            }
            let (a, b) = (items[0].as_duration()?, items[1].as_duration()?);
            if a > b {
                n.error("min must not exceed max");
                return None;
            }
            Some((a, b))
        });
        match pair {
            Some(p) => s.event_delay = p,
            None => ok = false,
        }
    }
    ok
}

/// `faults`: one plan string, or a table of fault settings.
fn read_faults(tbl: &Obj<'_>, s: &mut ServerTable) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("faults") {
        if let Some(text) = n.item_str() {
            match FaultPlan::parse(text) {
                Ok(f) => s.faults = f,
                Err(e) => {
                    n.error(e);
                    ok = false;
                }
            }
        } else if let Some(f) = n.as_obj() {
            for (k, v, _) in f.entries() {
                // A value is one setting ("0.5%@idle", "agent_thinking:1%") or a list of them.
                let texts: Vec<Node<'_>> = if v.item_str().is_some() {
                    vec![v.clone()]
                } else {
                    v.as_array().unwrap_or_default()
                };
                for t in texts {
                    let Some(text) = t.as_str() else {
                        ok = false;
                        continue;
                    };
                    if let Err(e) = s.faults.set(&k, text) {
                        t.error(e);
                        ok = false;
                    }
                }
            }
            f.finish();
        } else {
            ok = false;
        }
    }
    ok
}
