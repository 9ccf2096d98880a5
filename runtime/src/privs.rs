//! Dropping privileges once every socket is bound (DESIGN.md, "Processes").
//!
//! relayd-run starts as root to bind low ports, read a plan and keys only root may read,
//! and open the control socket. Then the relay process and the signer process each
//! switch to an unprivileged user: `-u USER` if given, else `_relayd` (relayd's user).
//! As root with neither, relayd-run refuses to start unless `--no-privdrop` says, for
//! development and tests, to stay root with every capability. Started as another user
//! already, it keeps that user and only sheds capabilities.
//!
//! The switch is process-wide: supplementary groups, then real, effective and saved
//! group and user ids (glibc applies each to every thread), then every capability set is
//! emptied (effective, permitted, inheritable, ambient, and the bounding set where
//! CAP_SETPCAP allows) and `PR_SET_NO_NEW_PRIVS` is set. Capabilities and the
//! no-new-privs flag belong to a thread and are inherited by the threads it creates, so
//! [`Privileges::drop`] refuses to run once a second thread exists.
//!
//! One capability may stay, in the relay process only: CAP_NET_RAW, when the plan has
//! `check icmp` tables and `net.ipv4.ping_group_range` does not admit the user's groups,
//! so `health/icmp.rs` falls back to raw ICMP sockets. relayd keeps raw ICMP sockets
//! open in its hce for the same reason; here the checks open one socket per check, so
//! the capability, not a socket, is what is kept. Where the sysctl admits the user,
//! nothing is kept and the checks use ping sockets.
//!
//! CAP_NET_ADMIN, which nftables rules, routes and the sockets of transparent forwards
//! (IP_TRANSPARENT) need, is never kept by the relay process: only the privileged helper
//! (`crate::helper`) holds it, and nothing else ([`Privileges::drop_to_net_admin`]). The
//! listeners of relays that forward to the destination get IP_TRANSPARENT while the
//! process still has it, before the drop.

use nix::unistd::{Gid, Uid, User};
use relaydc_spec::plan::{Check, Plan};
use rustix::thread::{CapabilitySet, CapabilitySets};
use std::ffi::CString;
use std::fmt;

/// relayd's unprivileged user.
pub const DEFAULT_USER: &str = "_relayd";

/// Why privileges could not be chosen or dropped. `Display` is one sentence for an
/// operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrivError {
    /// `-u USER` names no user.
    UnknownUser(String),
    /// Running as root, without `-u` and without a `_relayd` user.
    NoUser,
    /// `-u root` (or another uid 0): nothing would be dropped.
    RootUser(String),
    /// `-u USER` for another user while not running as root.
    NotRoot { user: String, uid: u32 },
    /// The user database could not be read.
    Lookup(String),
    /// A second thread exists: capabilities would be dropped in one thread only.
    Threads(usize),
    /// A system call failed.
    Call(&'static str, String),
    /// After the switch, root could still be regained.
    StillPrivileged,
    /// The process lacks a capability it must keep (the helper's CAP_NET_ADMIN).
    Missing(&'static str),
}

impl fmt::Display for PrivError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivError::UnknownUser(u) => write!(
                f,
                "unknown user {u} (-u): name an existing unprivileged user to run as"
            ),
            PrivError::NoUser => write!(
                f,
                "running as root, and there is no user {DEFAULT_USER} to drop privileges to: \
                 create it (useradd --system --no-create-home --shell /usr/sbin/nologin \
                 {DEFAULT_USER}), name another with -u USER, or pass --no-privdrop to stay \
                 root (for development only)"
            ),
            PrivError::RootUser(u) => write!(
                f,
                "user {u} has uid 0, so nothing would be dropped: name an unprivileged user \
                 with -u, or pass --no-privdrop to stay root (for development only)"
            ),
            PrivError::NotRoot { user, uid } => write!(
                f,
                "cannot switch to user {user}: running as uid {uid}, not root; start as \
                 root or leave out -u"
            ),
            PrivError::Lookup(e) => write!(f, "cannot read the user database: {e}"),
            PrivError::Threads(n) => write!(
                f,
                "cannot drop privileges: the process already has {n} threads, and \
                 capabilities are dropped per thread"
            ),
            PrivError::Call(what, e) => write!(f, "cannot drop privileges: {what}: {e}"),
            PrivError::StillPrivileged => write!(
                f,
                "cannot drop privileges: root could still be regained after the switch"
            ),
            PrivError::Missing(cap) => write!(
                f,
                "redirects, routers and transparent forwards need {cap} (nftables rules, \
                 routes, sockets bound to clients' addresses): start relayd-run as root, \
                 or give it {cap}"
            ),
        }
    }
}

impl std::error::Error for PrivError {}

/// Who to become after binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Target {
    /// `--no-privdrop`: stay as started, every capability kept.
    #[default]
    Keep,
    /// Not started as root: stay this user, shed capabilities.
    Shed,
    /// Switch to this user.
    User(Account),
}

/// A user to switch to, resolved once (both processes use the same numbers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary group among them.
    pub groups: Vec<u32>,
}

/// What [`Privileges::drop`] will do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Privileges {
    target: Target,
    /// Keep CAP_NET_RAW (relay process only; see the module documentation).
    keep_net_raw: bool,
}

impl Privileges {
    /// Stay as started, with every capability: `--no-privdrop`, and library use.
    pub fn keep() -> Privileges {
        Privileges::default()
    }

    /// Chooses from the command line: `user` is `-u`, `no_privdrop` is `--no-privdrop`.
    pub fn choose(user: Option<&str>, no_privdrop: bool) -> Result<Privileges, PrivError> {
        if no_privdrop {
            return Ok(Privileges::keep());
        }
        let euid = nix::unistd::geteuid();
        let uid = nix::unistd::getuid();
        let root = euid.is_root() || uid.is_root();
        if !root {
            if let Some(name) = user {
                let found = lookup(name)?.ok_or_else(|| PrivError::UnknownUser(name.into()))?;
                if found.uid != euid.as_raw() || found.uid != uid.as_raw() {
                    return Err(PrivError::NotRoot {
                        user: name.into(),
                        uid: euid.as_raw(),
                    });
                }
            }
            return Ok(Privileges {
                target: Target::Shed,
                keep_net_raw: false,
            });
        }
        let account = match user {
            Some(name) => lookup(name)?.ok_or_else(|| PrivError::UnknownUser(name.into()))?,
            None => lookup(DEFAULT_USER)?.ok_or(PrivError::NoUser)?,
        };
        if account.uid == 0 {
            return Err(PrivError::RootUser(account.name));
        }
        Ok(Privileges {
            target: Target::User(account),
            keep_net_raw: false,
        })
    }

    /// The user switched to, if any.
    pub fn account(&self) -> Option<&Account> {
        match &self.target {
            Target::User(a) => Some(a),
            _ => None,
        }
    }

    /// Whether [`Privileges::drop`] changes anything (not `--no-privdrop`).
    pub fn drops(&self) -> bool {
        self.target != Target::Keep
    }

    /// Whether CAP_NET_RAW is kept.
    pub fn keeps_net_raw(&self) -> bool {
        self.keep_net_raw
    }

    /// Keeps CAP_NET_RAW if `plan` has `check icmp` tables (enabled or not: relayctl can
    /// enable one) and ping sockets are not allowed for the groups the process will have.
    pub fn with_icmp_needs(mut self, plan: &Plan) -> Privileges {
        let icmp = plan
            .tables
            .iter()
            .any(|t| matches!(t.check, Check::Icmp) && !t.hosts.is_empty());
        self.keep_net_raw = match &self.target {
            Target::Keep => false,
            _ if !icmp => false,
            Target::User(a) => !ping_allowed(&a.groups),
            Target::Shed => {
                let mut groups: Vec<u32> = nix::unistd::getgroups()
                    .map(|g| g.iter().map(|g| g.as_raw()).collect())
                    .unwrap_or_default();
                groups.push(nix::unistd::getegid().as_raw());
                !ping_allowed(&groups)
            }
        };
        self
    }

    /// The signer child's arguments for the same switch (never with CAP_NET_RAW).
    pub fn to_args(&self) -> Vec<String> {
        match &self.target {
            Target::Keep => vec!["--keep".into()],
            Target::Shed => vec!["--shed".into()],
            Target::User(a) => {
                let groups: Vec<String> = a.groups.iter().map(u32::to_string).collect();
                vec![
                    "--as".into(),
                    format!("{}:{}:{}:{}", a.name, a.uid, a.gid, groups.join(",")),
                ]
            }
        }
    }

    /// Parses [`Privileges::to_args`].
    pub fn from_args(args: &[String]) -> Option<Privileges> {
        let target = match args {
            [k] if k == "--keep" => Target::Keep,
            [s] if s == "--shed" => Target::Shed,
            [a, spec] if a == "--as" => {
                let mut it = spec.rsplitn(4, ':');
                let groups = it.next()?;
                let gid = it.next()?.parse().ok()?;
                let uid = it.next()?.parse().ok()?;
                let name = it.next()?.to_string();
                let groups = if groups.is_empty() {
                    Vec::new()
                } else {
                    groups
                        .split(',')
                        .map(|g| g.parse().ok())
                        .collect::<Option<Vec<u32>>>()?
                };
                Target::User(Account {
                    name,
                    uid,
                    gid,
                    groups,
                })
            }
            _ => return None,
        };
        Some(Privileges {
            target,
            keep_net_raw: false,
        })
    }

    /// [`Privileges::drop`] in the relay process, saying (at `-v`) what it kept.
    pub fn apply(&self) -> Result<(), PrivError> {
        self.drop()?;
        let who = match &self.target {
            Target::Keep => return Ok(()),
            Target::Shed => format!("uid {}", nix::unistd::getuid()),
            Target::User(a) => format!("user {}", a.name),
        };
        let kept = if self.keep_net_raw {
            "CAP_NET_RAW (raw ICMP checks)"
        } else {
            "no capabilities"
        };
        crate::log::debug(&format!("privileges dropped: running as {who}, {kept}"));
        Ok(())
    }

    /// Drops privileges as chosen. Call with one thread only, after every socket that
    /// needs privileges is bound.
    pub fn drop(&self) -> Result<(), PrivError> {
        if self.target == Target::Keep {
            return Ok(());
        }
        let threads = thread_count();
        if threads > 1 {
            return Err(PrivError::Threads(threads));
        }
        let keep = if self.keep_net_raw {
            CapabilitySet::NET_RAW
        } else {
            CapabilitySet::empty()
        };
        if let Target::User(a) = &self.target {
            switch_user(a, keep)?;
        }
        let have = rustix::thread::capabilities(None)
            .map_err(|e| PrivError::Call("capget", e.to_string()))?;
        let keep = keep & have.permitted;
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: keep,
                permitted: keep,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(|e| PrivError::Call("capset", e.to_string()))?;
        // Kernels before 4.3 have no ambient set; nothing can be in it there.
        match rustix::thread::clear_ambient_capability_set() {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(PrivError::Call("clear the ambient set", e.to_string())),
        }
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| PrivError::Call("PR_SET_NO_NEW_PRIVS", e.to_string()))?;
        if let Target::User(a) = &self.target {
            // relayd's own paranoia: the switch must not be reversible.
            if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
                || nix::unistd::getuid().as_raw() != a.uid
                || nix::unistd::geteuid().as_raw() != a.uid
            {
                return Err(PrivError::StillPrivileged);
            }
        }
        Ok(())
    }

    /// The signer process's drop: the same switch, then no capability at all (even
    /// with `--no-privdrop`: the signer needs none), no new privileges, and not
    /// dumpable, so no process of the same user can read its memory through ptrace or
    /// /proc.
    pub fn drop_everything(&self) -> Result<(), PrivError> {
        let plain = Privileges {
            target: self.target.clone(),
            keep_net_raw: false,
        };
        plain.drop()?;
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: CapabilitySet::empty(),
                permitted: CapabilitySet::empty(),
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(|e| PrivError::Call("capset", e.to_string()))?;
        match rustix::thread::clear_ambient_capability_set() {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(PrivError::Call("clear the ambient set", e.to_string())),
        }
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| PrivError::Call("PR_SET_NO_NEW_PRIVS", e.to_string()))?;
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .map_err(|e| PrivError::Call("PR_SET_DUMPABLE", e.to_string()))
    }

    /// The privileged helper's drop (`crate::helper`): the same switch as the relay
    /// process (under `--no-privdrop` it stays the user it was started as), then
    /// CAP_NET_ADMIN alone, in the permitted, effective, inheritable and ambient sets,
    /// the bounding set holding nothing else, no new privileges and not dumpable. The
    /// ambient set is how the `nft` and `ip` it runs get CAP_NET_ADMIN, and nothing
    /// more, without being root: a process of uid 0 owns most files even with no
    /// capability, which is why the helper does not stay root when it can switch.
    pub fn drop_to_net_admin(&self) -> Result<(), PrivError> {
        let threads = thread_count();
        if threads > 1 {
            return Err(PrivError::Threads(threads));
        }
        let keep = CapabilitySet::NET_ADMIN;
        let have = rustix::thread::capabilities(None)
            .map_err(|e| PrivError::Call("capget", e.to_string()))?;
        if !have.permitted.contains(keep) {
            return Err(PrivError::Missing("CAP_NET_ADMIN"));
        }
        limit_bounding_set(keep)?;
        if let Target::User(a) = &self.target {
            switch_user(a, keep)?;
        }
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: keep,
                permitted: keep,
                inheritable: keep,
            },
        )
        .map_err(|e| PrivError::Call("capset", e.to_string()))?;
        rustix::thread::clear_ambient_capability_set()
            .and_then(|()| rustix::thread::configure_capability_in_ambient_set(keep, true))
            .map_err(|e| PrivError::Call("PR_CAP_AMBIENT_RAISE", e.to_string()))?;
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| PrivError::Call("PR_SET_NO_NEW_PRIVS", e.to_string()))?;
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .map_err(|e| PrivError::Call("PR_SET_DUMPABLE", e.to_string()))?;
        if let Target::User(a) = &self.target {
            if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
                || nix::unistd::getuid().as_raw() != a.uid
                || nix::unistd::geteuid().as_raw() != a.uid
            {
                return Err(PrivError::StillPrivileged);
            }
        }
        Ok(())
    }
}

/// Groups, group ids, user ids; the bounding set emptied first (while CAP_SETPCAP is
/// still effective) except for `keep`, which survives the uid change through
/// PR_SET_KEEPCAPS.
fn switch_user(a: &Account, keep: CapabilitySet) -> Result<(), PrivError> {
    let call = |what: &'static str| move |e: nix::Error| PrivError::Call(what, e.to_string());
    limit_bounding_set(keep)?;
    if !keep.is_empty() {
        rustix::thread::set_keep_capabilities(true)
            .map_err(|e| PrivError::Call("PR_SET_KEEPCAPS", e.to_string()))?;
    }
    let groups: Vec<Gid> = a.groups.iter().copied().map(Gid::from_raw).collect();
    nix::unistd::setgroups(&groups).map_err(call("setgroups"))?;
    let gid = Gid::from_raw(a.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(call("setresgid"))?;
    let uid = Uid::from_raw(a.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(call("setresuid"))?;
    if !keep.is_empty() {
        rustix::thread::set_keep_capabilities(false)
            .map_err(|e| PrivError::Call("PR_SET_KEEPCAPS", e.to_string()))?;
    }
    Ok(())
}

/// Empties the bounding set but for `keep`, where CAP_SETPCAP is effective (else there
/// is nothing this process may drop from it).
fn limit_bounding_set(keep: CapabilitySet) -> Result<(), PrivError> {
    let have =
        rustix::thread::capabilities(None).map_err(|e| PrivError::Call("capget", e.to_string()))?;
    if have.effective.contains(CapabilitySet::SETPCAP) {
        for cap in CapabilitySet::all().iter() {
            if keep.contains(cap) {
                continue;
            }
            // EINVAL: a capability this kernel does not know.
            match rustix::thread::remove_capability_from_bounding_set(cap) {
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(PrivError::Call("PR_CAPBSET_DROP", e.to_string())),
            }
        }
    }
    Ok(())
}

/// A user by name, with its groups.
pub fn lookup(name: &str) -> Result<Option<Account>, PrivError> {
    let Some(user) = User::from_name(name).map_err(|e| PrivError::Lookup(e.to_string()))? else {
        return Ok(None);
    };
    let cname = CString::new(name).map_err(|e| PrivError::Lookup(e.to_string()))?;
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, user.gid)
        .map_err(|e| PrivError::Lookup(e.to_string()))?
        .iter()
        .map(|g| g.as_raw())
        .collect();
    if !groups.contains(&user.gid.as_raw()) {
        groups.insert(0, user.gid.as_raw());
    }
    Ok(Some(Account {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
    }))
}

/// Whether `net.ipv4.ping_group_range` (which governs IPv6 ping sockets too) admits one
/// of `groups`.
pub fn ping_allowed(groups: &[u32]) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range") else {
        return false;
    };
    let mut it = text.split_whitespace().map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => groups.iter().any(|g| (lo..=hi).contains(g)),
        _ => false,
    }
}

/// The process's threads, from /proc (1 if it cannot be told).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn the_signer_arguments_round_trip() {
        let p = Privileges {
            target: Target::User(Account {
                name: "x:y".into(),
                uid: 7,
                gid: 8,
                groups: vec![8, 9],
            }),
            keep_net_raw: true,
        };
        let back = Privileges::from_args(&p.to_args()).unwrap();
        assert_eq!(back.account(), p.account());
        assert!(!back.keeps_net_raw(), "the signer never keeps CAP_NET_RAW");
        for t in [Target::Keep, Target::Shed] {
            let p = Privileges {
                target: t,
                keep_net_raw: false,
            };
            assert_eq!(Privileges::from_args(&p.to_args()), Some(p));
        }
        assert_eq!(Privileges::from_args(&["--as".into(), "a:b".into()]), None);
    }

    #[test]
    fn no_privdrop_changes_nothing() {
        let p = Privileges::choose(Some("anyone"), true).unwrap();
        assert!(!p.drops());
        assert_eq!(p.drop(), Ok(()));
    }
}
