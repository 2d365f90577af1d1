//! Whether this machine can carry the plan, checked in the preflight before
//! any socket opens (DESIGN.md: "a plan the machine cannot carry" is exit
//! 2). A run that runs out of file descriptors or local ports part-way
//! offers the target less than the plan (and is INVALID); refusing it up
//! front says so before anything is sent.
//!
//! The need: each user's sockets (its WebSocket, and one HTTP connection of
//! the shared pool when the scenario makes HTTP calls: REST steps, tickets,
//! a login source), the embedded reference server's side of each of them
//! when there is no `--target` (one fd per accepted socket), and
//! [`FD_HEADROOM`] for the process itself (standard streams, the runtime,
//! output files, listeners). RLIMIT_NOFILE's soft limit is raised to its
//! hard limit first. The sockets to one target address also need as many
//! local ports (`/proc/sys/net/ipv4/ip_local_port_range`).
//!
//! Imports: `scenario`.

use super::{RunError, RunRequest};
use crate::scenario::{Scenario, Step, StepKind};

/// File descriptors the process needs besides the users' sockets.
pub(super) const FD_HEADROOM: u64 = 64;

/// What the plan needs of this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Needs {
    /// Users of this process at the plan's peak.
    pub users: u64,
    /// Sockets each user holds: its WebSocket, and an HTTP connection.
    pub per_user: u64,
    /// The embedded server holds the other end of every socket.
    pub embedded: bool,
}

impl Needs {
    pub fn of(req: &RunRequest, embedded: bool) -> Needs {
        let sc = &req.scenario;
        Needs {
            users: sc.workload.plan.shard(req.shard).peak_users(),
            per_user: 1 + u64::from(uses_http(sc)),
            embedded,
        }
    }

    /// Sockets to the target's one address.
    pub fn sockets(&self) -> u64 {
        self.users * self.per_user
    }

    /// File descriptors in all.
    pub fn fds(&self) -> u64 {
        let server = if self.embedded { self.sockets() + 1 } else { 0 };
        self.sockets() + server + FD_HEADROOM
    }

    /// How the need adds up, for the refusal.
    fn explain(&self) -> String {
        let each = if self.per_user == 1 {
            "1 socket each".to_string()
        } else {
            format!(
                "{} sockets each: its WebSocket and an HTTP connection",
                self.per_user
            )
        };
        let server = if self.embedded {
            ", as many again for the embedded reference server's side of them"
        } else {
            ""
        };
        format!(
            "{} users x {each}{server}, + {FD_HEADROOM} for the process",
            self.users
        )
    }
}

/// Whether the users make HTTP calls besides the upgrade (REST steps, a
/// ticket per connect, a login token source).
fn uses_http(sc: &Scenario) -> bool {
    let mut rest = false;
    for j in &sc.journeys {
        Step::walk(&j.steps, &mut |s| {
            rest |= match &s.kind {
                StepKind::CreateThread { .. }
                | StepKind::ListThreads
                | StepKind::History
                | StepKind::Http { .. } => true,
                StepKind::Connect
                | StepKind::Send { .. }
                | StepKind::Await { .. }
                | StepKind::Think { .. }
                | StepKind::SwitchThread { .. }
                | StepKind::Disconnect
                | StepKind::Reconnect
                | StepKind::Repeat { .. } => false,
            }
        });
    }
    let ticket = sc.auth.present.contains(&crate::auth::Presentation::Ticket);
    let login = matches!(sc.auth.source, crate::scenario::TokenSource::Login { .. });
    rest || ticket || login
}

/// Refuses a plan this machine cannot carry; raises the fd limit first.
pub(super) fn check(req: &RunRequest, embedded: bool) -> Result<(), RunError> {
    let needs = Needs::of(req, embedded);
    if needs.users == 0 {
        return Ok(());
    }
    if let Some((limit, hard)) = raise_fd_limit() {
        fd_verdict(&needs, limit, hard)?;
    }
    if let Some(range) = local_port_range() {
        port_verdict(&needs, range)?;
    }
    Ok(())
}

/// The refusal when the need is over the limit (after raising it to `hard`).
pub(super) fn fd_verdict(needs: &Needs, limit: u64, hard: Option<u64>) -> Result<(), RunError> {
    let need = needs.fds();
    if need <= limit {
        return Ok(());
    }
    let hard = hard.map_or("unlimited".to_string(), |h| h.to_string());
    let target = if needs.embedded {
        ", or give a --target so the reference server's sockets are not this process's"
    } else {
        ""
    };
    Err(RunError::Usage(format!(
        "this plan needs about {need} file descriptors ({}), but this process may open at most {limit} (RLIMIT_NOFILE; its hard limit is {hard}): raise the limit (`ulimit -n {need}` in the shell that starts chatload, LimitNOFILE= for a service), run fewer users, or split the users across processes or machines with --shards{target}; nothing was sent",
        needs.explain()
    )))
}

/// The refusal when the sockets to one address outnumber the local ports.
pub(super) fn port_verdict(needs: &Needs, (lo, hi): (u64, u64)) -> Result<(), RunError> {
    let ports = hi.saturating_sub(lo) + 1;
    let sockets = needs.sockets();
    if sockets <= ports {
        return Ok(());
    }
    Err(RunError::Usage(format!(
        "this plan opens about {sockets} sockets to one target address ({}), but the local port range {lo}-{hi} (net.ipv4.ip_local_port_range) has {ports} ports: widen the range, run fewer users, or split the users across machines with --shards; nothing was sent",
        needs.explain()
    )))
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; the limit now in
/// force and the hard limit (`None`: unlimited). `None` where there is no
/// such limit.
#[cfg(unix)]
fn raise_fd_limit() -> Option<(u64, Option<u64>)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    // An unlimited hard limit still stops at the kernel's nr_open.
    let ceiling = now.maximum.or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    if let (Some(cur), Some(max)) = (now.current, ceiling) {
        if cur < max {
            let raised = Rlimit {
                current: Some(max),
                maximum: now.maximum,
            };
            let _ = setrlimit(Resource::Nofile, raised);
        }
    }
    let after = getrlimit(Resource::Nofile);
    Some((after.current.unwrap_or(u64::MAX), after.maximum))
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<(u64, Option<u64>)> {
    None
}

/// The local port range connects draw from, on Linux.
fn local_port_range() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_need_counts_users_sockets_the_embedded_server_and_headroom() {
        let n = Needs {
            users: 400,
            per_user: 1,
            embedded: true,
        };
        assert_eq!(n.fds(), 400 + 401 + FD_HEADROOM);
        let err = fd_verdict(&n, 256, Some(256)).unwrap_err().to_string();
        assert!(err.contains("needs about 865 file descriptors"), "{err}");
        assert!(err.contains("at most 256"), "{err}");
        assert!(
            err.contains("ulimit -n 865") && err.contains("--shards"),
            "{err}"
        );
        assert!(fd_verdict(&n, 865, None).is_ok());
        let http = Needs {
            per_user: 2,
            embedded: false,
            ..n
        };
        assert_eq!(http.fds(), 800 + FD_HEADROOM);
        let err = port_verdict(&http, (60_000, 60_499))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("800 sockets") && err.contains("500 ports"),
            "{err}"
        );
        assert!(port_verdict(&http, (32_768, 60_999)).is_ok());
    }
}
