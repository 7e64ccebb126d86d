//! The events Sentinels publish on pub/sub, and a parser that turns each
//! `(channel, payload)` into a typed [`SentinelEvent`] and never panics.
//!
//! A Sentinel publishes every event on a channel named after it (`+sdown`,
//! `+switch-master`, ...). Most payloads are *instance details*, as
//! `sentinelEvent()` in Redis's `sentinel.c` prints them:
//!
//! ```text
//! <type> <name> <ip> <port> @ <master-name> <master-ip> <master-port> [<trailer>]
//! master mymaster 127.0.0.1 6379 [<trailer>]
//! ```
//!
//! `<type>` is `master`, `slave` or `sentinel`; the `@` part is absent for a
//! master. A replica's name is `ip:port` (`[v6]:port`), a Sentinel's is its
//! run id (Redis 7; `ip:port` in older versions). `<ip>` is a hostname when
//! `announce-hostnames` is on. The trailers Redis 7.0 prints:
//!
//! | event | trailer |
//! | --- | --- |
//! | `+monitor` | `quorum <n>` |
//! | `+set` | `<option> [<value> ...]` (`auth-pass` shows `******`) |
//! | `+odown` | `#quorum <agreeing>/<quorum>`, e.g. `#quorum 3/2` |
//! | `+role-change`, `-role-change` | `new reported role is master\|slave` |
//! | `+sentinel-address-switch` | `ip <ip> port <port> for <runid>` |
//! | `+sentinel-address-update` | `<n> additional matching instances` |
//!
//! Six events are not instance details: `+switch-master <master> <old-ip>
//! <old-port> <new-ip> <new-port>`, `+new-epoch <epoch>`, `+vote-for-leader
//! <runid> <epoch>`, `+tilt`/`-tilt` (`#tilt mode entered|exited`),
//! `-script-error <path> <signal> <exit-code>` and `-script-timeout <path>
//! <pid>`. `tests/fixtures/sentinel/events.txt` holds every message three
//! real Redis 7.0.15 Sentinels published through two failover scenarios, and
//! the tests below parse each line.
//!
//! What the parser promises: the fields it reports are exactly what Sentinel
//! printed; anything after them that a later version might append is kept
//! (as [`Detail::Text`]) or ignored, never an error. An unknown channel, a
//! missing or non-numeric field, or bytes that are not UTF-8 give
//! [`SentinelEvent::Raw`] with the reason.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The shape of a payload, by channel. One table, so that
/// [`KNOWN_EVENTS`] and the parser cannot disagree.
#[derive(Clone, Copy)]
enum Shape {
    Instance,
    Sdown,
    Odown,
    SwitchMaster,
    NewEpoch,
    VoteForLeader,
    Tilt,
    ScriptError,
    ScriptTimeout,
}

const SPECS: &[(&str, Shape)] = &[
    // Monitoring and configuration.
    ("+monitor", Shape::Instance),
    ("-monitor", Shape::Instance),
    ("+set", Shape::Instance),
    ("+reset-master", Shape::Instance),
    // Discovery.
    ("+slave", Shape::Instance),
    ("+sentinel", Shape::Instance),
    ("+sentinel-address-switch", Shape::Instance),
    ("+sentinel-address-update", Shape::Instance),
    ("+sentinel-invalid-addr", Shape::Instance),
    ("+reboot", Shape::Instance),
    ("+role-change", Shape::Instance),
    ("-role-change", Shape::Instance),
    ("+convert-to-slave", Shape::Instance),
    ("+fix-slave-config", Shape::Instance),
    // Failure detection.
    ("+sdown", Shape::Sdown),
    ("-sdown", Shape::Sdown),
    ("+odown", Shape::Odown),
    ("-odown", Shape::Odown),
    ("+tilt", Shape::Tilt),
    ("-tilt", Shape::Tilt),
    // Failover, in the order a leader goes through it.
    ("+new-epoch", Shape::NewEpoch),
    ("+try-failover", Shape::Instance),
    ("+vote-for-leader", Shape::VoteForLeader),
    ("+elected-leader", Shape::Instance),
    ("-failover-abort-not-elected", Shape::Instance),
    ("+failover-state-select-slave", Shape::Instance),
    ("-failover-abort-no-good-slave", Shape::Instance),
    ("+selected-slave", Shape::Instance),
    ("+failover-state-send-slaveof-noone", Shape::Instance),
    ("+failover-state-wait-promotion", Shape::Instance),
    ("-failover-abort-slave-timeout", Shape::Instance),
    ("+promoted-slave", Shape::Instance),
    ("+failover-state-reconf-slaves", Shape::Instance),
    ("+slave-reconf-sent", Shape::Instance),
    ("-slave-reconf-sent-timeout", Shape::Instance),
    ("+slave-reconf-inprog", Shape::Instance),
    ("+slave-reconf-done", Shape::Instance),
    ("+failover-end-for-timeout", Shape::Instance),
    ("+slave-reconf-sent-be", Shape::Instance),
    ("+failover-end", Shape::Instance),
    ("+switch-master", Shape::SwitchMaster),
    // The Sentinel that did not lead learns of the failover from the leader.
    ("+config-update-from", Shape::Instance),
    // Notification and client-reconfig scripts.
    ("-script-error", Shape::ScriptError),
    ("-script-timeout", Shape::ScriptTimeout),
    // Still in the Redis documentation, published only by Redis 2.x.
    ("+failover-detected", Shape::Instance),
    ("-dup-sentinel", Shape::Instance),
];

/// Every event name a Sentinel publishes: what `redops check` accepts in a
/// rule's `events`, and the channels to SUBSCRIBE to. The debug-level
/// `+script-child`, `-script-child`, `-cmd-link-reconnection` and
/// `-pubsub-link-reconnection` only reach the Sentinel's log, never pub/sub.
pub const KNOWN_EVENTS: &[&str] = &{
    let mut names = [""; SPECS.len()];
    let mut i = 0;
    while i < SPECS.len() {
        names[i] = SPECS[i].0;
        i += 1;
    }
    names
};

/// Whether `name` is a channel Sentinel publishes events on.
pub fn is_known_event(name: &str) -> bool {
    KNOWN_EVENTS.contains(&name)
}

/// A `host:port` as Sentinel prints it. `host` is an IP address unless the
/// Sentinels run with `announce-hostnames yes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What an instance is, in redops's words: Sentinel says `slave`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceKind {
    Master,
    Replica,
    Sentinel,
}

impl InstanceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Master => "master",
            InstanceKind::Replica => "replica",
            InstanceKind::Sentinel => "sentinel",
        }
    }

    /// The word Sentinel prints.
    fn wire(self) -> &'static str {
        match self {
            InstanceKind::Master => "master",
            InstanceKind::Replica => "slave",
            InstanceKind::Sentinel => "sentinel",
        }
    }

    fn from_wire(word: &str) -> Option<Self> {
        match word {
            "master" => Some(InstanceKind::Master),
            "slave" | "replica" => Some(InstanceKind::Replica),
            "sentinel" => Some(InstanceKind::Sentinel),
            _ => None,
        }
    }
}

impl fmt::Display for InstanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The instance an event is about. The parser guarantees `master` is `None`
/// exactly when `kind` is [`InstanceKind::Master`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Instance {
    pub kind: InstanceKind,
    /// Sentinel's name for it: the master name, `ip:port` for a replica, the
    /// run id for a Sentinel (`ip:port` before Redis 7).
    pub name: String,
    pub addr: Addr,
    /// The master a replica or Sentinel belongs to.
    pub master: Option<MasterRef>,
}

impl Instance {
    /// The master this instance is or belongs to.
    pub fn master_name(&self) -> &str {
        self.master.as_ref().map_or(&self.name, |m| &m.name)
    }

    /// The address of the master this instance is or belongs to, as the
    /// publishing Sentinel knew it then.
    pub fn master_addr(&self) -> &Addr {
        self.master.as_ref().map_or(&self.addr, |m| &m.addr)
    }

    /// What identifies the instance across Sentinels: every field but the
    /// master's address, which a Sentinel that has not yet heard of a
    /// failover still prints the old way.
    fn identity(&self) -> String {
        match &self.master {
            None => format!("{} {} {}", self.kind, self.name, self.addr),
            Some(m) => format!("{} {} {} @ {}", self.kind, self.name, self.addr, m.name),
        }
    }
}

impl fmt::Display for Instance {
    /// The instance details exactly as Sentinel prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Addr { host, port } = &self.addr;
        write!(f, "{} {} {host} {port}", self.kind.wire(), self.name)?;
        if let Some(m) = &self.master {
            write!(f, " @ {} {} {}", m.name, m.addr.host, m.addr.port)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MasterRef {
    pub name: String,
    pub addr: Addr,
}

/// `+odown`'s `#quorum <agreeing>/<quorum>`: how many Sentinels (this one
/// included) agreed the master is down, and the configured quorum. The
/// first can exceed the second, and differs from Sentinel to Sentinel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Quorum {
    pub agreeing: u32,
    pub quorum: u32,
}

/// What follows the instance details of an [`SentinelEvent::Instance`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Detail {
    /// `+monitor`: the quorum the master is now monitored with.
    Quorum { quorum: u32 },
    /// `+set`: the option `SENTINEL SET` changed, and its value as given:
    /// two words for `rename-command`, `******` for `auth-pass`, `Some("")`
    /// when the option was cleared.
    Set { option: String, value: Option<String> },
    /// `±role-change`: the role the instance now reports (`+` when it
    /// agrees with what Sentinel thinks it is, `-` when not).
    ReportedRole { role: InstanceKind },
    /// `+sentinel-address-switch`: the Sentinel with this run id now
    /// announces itself at `addr`.
    AddressSwitch { addr: Addr, runid: String },
    /// `+sentinel-address-update`: how many entries of the same Sentinel
    /// under other masters were moved to its new address.
    AdditionalMatches { count: u32 },
    /// Any other trailer, verbatim, such as `-dup-sentinel`'s
    /// `#duplicate of <ip>:<port> or <runid>` in Redis 2.8.
    Text { text: String },
}

impl fmt::Display for Detail {
    /// The trailer exactly as Sentinel prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::Quorum { quorum } => write!(f, "quorum {quorum}"),
            Detail::Set { option, value: None } => f.write_str(option),
            Detail::Set { option, value: Some(v) } => write!(f, "{option} {v}"),
            Detail::ReportedRole { role } => write!(f, "new reported role is {}", role.wire()),
            Detail::AddressSwitch { addr, runid } => write!(f, "ip {} port {} for {runid}", addr.host, addr.port),
            Detail::AdditionalMatches { count } => write!(f, "{count} additional matching instances"),
            Detail::Text { text } => f.write_str(text),
        }
    }
}

/// One message a Sentinel published, parsed. Instances are boxed to keep
/// the enum small: it travels inside every [`crate::event::Event`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SentinelEvent {
    /// `+switch-master`: the master of `master` moved from `old` to `new`.
    /// Every Sentinel publishes it: the leader when its failover ends, the
    /// others when they hear of the new configuration.
    SwitchMaster { master: String, old: Addr, new: Addr },
    /// `+sdown` (`entered`) and `-sdown`: this Sentinel alone sees the
    /// instance down, or up again.
    Sdown { entered: bool, instance: Box<Instance> },
    /// `+odown` (`entered`, with the quorum) and `-odown`: enough Sentinels
    /// agree the master is down, or no longer.
    Odown {
        entered: bool,
        instance: Box<Instance>,
        quorum: Option<Quorum>,
    },
    /// `+tilt` (`entered`) and `-tilt`: the Sentinel's clock jumped (or the
    /// process stalled) and it stops acting for 30 s. The payload does not
    /// say which Sentinel.
    Tilt { entered: bool },
    /// `+new-epoch`: the Sentinel moved to a new configuration epoch.
    NewEpoch { epoch: u64 },
    /// `+vote-for-leader`: the Sentinel voted for `leader` (a run id) as
    /// failover leader in `epoch`.
    VoteForLeader { leader: String, epoch: u64 },
    /// `-script-error`: a notification or reconfig script failed. `signal`
    /// is 99 when it could not be forked.
    ScriptError { path: String, signal: u32, exit_code: u32 },
    /// `-script-timeout`: a script ran past its limit and was killed.
    ScriptTimeout { path: String, pid: u32 },
    /// Every other event, all of them instance details: `name` is the
    /// channel (`+failover-end`, `+convert-to-slave`, ...).
    Instance {
        name: &'static str,
        instance: Box<Instance>,
        detail: Option<Detail>,
    },
    /// A channel that is not a Sentinel event, or a payload that does not
    /// parse. `reason` says which; both texts are lossy UTF-8.
    Raw {
        channel: String,
        payload: String,
        reason: String,
    },
}

/// The target name of one node of a group: `<group>/<host>:<port>`.
/// Naming nodes by address keeps an alert on the node it is about when
/// roles move in a failover.
pub fn node_target(group: &str, addr: &str) -> String {
    format!("{group}/{addr}")
}

impl SentinelEvent {
    /// Where the event lands: an event about a master or replica concerns
    /// that node's target (`group/host:port`); everything else the group.
    pub fn target_in(&self, group: &str) -> String {
        let fields = self.fields();
        match (
            fields.get("kind").map(String::as_str),
            fields.get("ip"),
            fields.get("port"),
        ) {
            (Some("master" | "replica" | "slave"), Some(ip), Some(port)) => node_target(group, &format!("{ip}:{port}")),
            _ => group.to_owned(),
        }
    }

    /// For `+switch-master`, the target of the master it replaced.
    pub fn old_master_target(&self, group: &str) -> Option<String> {
        match self {
            SentinelEvent::SwitchMaster { old, .. } => Some(node_target(group, &format!("{}:{}", old.host, old.port))),
            _ => None,
        }
    }

    /// The event name: the channel it was published on.
    pub fn name(&self) -> &str {
        match self {
            SentinelEvent::SwitchMaster { .. } => "+switch-master",
            SentinelEvent::Sdown { entered, .. } => signed(*entered, "+sdown", "-sdown"),
            SentinelEvent::Odown { entered, .. } => signed(*entered, "+odown", "-odown"),
            SentinelEvent::Tilt { entered } => signed(*entered, "+tilt", "-tilt"),
            SentinelEvent::NewEpoch { .. } => "+new-epoch",
            SentinelEvent::VoteForLeader { .. } => "+vote-for-leader",
            SentinelEvent::ScriptError { .. } => "-script-error",
            SentinelEvent::ScriptTimeout { .. } => "-script-timeout",
            SentinelEvent::Instance { name, .. } => name,
            SentinelEvent::Raw { channel, .. } => channel,
        }
    }

    /// The instance the event is about, when its payload names one.
    pub fn instance(&self) -> Option<&Instance> {
        match self {
            SentinelEvent::Sdown { instance, .. }
            | SentinelEvent::Odown { instance, .. }
            | SentinelEvent::Instance { instance, .. } => Some(instance),
            _ => None,
        }
    }

    /// The master the event concerns, when the payload names one.
    pub fn master_name(&self) -> Option<&str> {
        match self {
            SentinelEvent::SwitchMaster { master, .. } => Some(master),
            _ => self.instance().map(Instance::master_name),
        }
    }

    /// The payload as Sentinel printed it (what [`parse`] read, less any
    /// trailing fields it ignored).
    pub fn payload(&self) -> String {
        match self {
            SentinelEvent::SwitchMaster { master, old, new } => {
                format!("{master} {} {} {} {}", old.host, old.port, new.host, new.port)
            }
            SentinelEvent::Sdown { instance, .. } => instance.to_string(),
            SentinelEvent::Odown { instance, quorum, .. } => match quorum {
                None => instance.to_string(),
                Some(q) => format!("{instance} #quorum {}/{}", q.agreeing, q.quorum),
            },
            SentinelEvent::Tilt { entered } => signed(*entered, "#tilt mode entered", "#tilt mode exited").to_owned(),
            SentinelEvent::NewEpoch { epoch } => epoch.to_string(),
            SentinelEvent::VoteForLeader { leader, epoch } => format!("{leader} {epoch}"),
            SentinelEvent::ScriptError {
                path,
                signal,
                exit_code,
            } => format!("{path} {signal} {exit_code}"),
            SentinelEvent::ScriptTimeout { path, pid } => format!("{path} {pid}"),
            SentinelEvent::Instance { instance, detail, .. } => match detail {
                None => instance.to_string(),
                Some(d) => format!("{instance} {d}"),
            },
            SentinelEvent::Raw { payload, .. } => payload.clone(),
        }
    }

    /// Flat fields for rule expressions and summaries. Always `event`;
    /// then, by event:
    ///
    /// - instance details: `kind` (`master`, `replica`, `sentinel`),
    ///   `instance` (its name), `ip`, `port`, `addr`, and `master`,
    ///   `master_ip`, `master_port`, `master_addr` (the instance itself when
    ///   it is a master);
    /// - `+odown`: `agreeing` and `quorum`; `+monitor`: `quorum`; `+set`:
    ///   `option`, `value`; `±role-change`: `role`;
    ///   `+sentinel-address-switch`: `new_ip`, `new_port`, `new_addr`,
    ///   `runid`; `+sentinel-address-update`: `count`; any other trailer:
    ///   `detail`;
    /// - `+switch-master`: `master`, `old_ip`, `old_port`, `old_addr`,
    ///   `new_ip`, `new_port`, `new_addr`;
    /// - `+new-epoch`: `epoch`; `+vote-for-leader`: `leader`, `epoch`;
    /// - `-script-error`: `path`, `signal`, `exit_code`;
    ///   `-script-timeout`: `path`, `pid`;
    /// - `Raw`: `payload`, `reason`.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let mut out = Fields::default();
        out.put("event", self.name());
        match self {
            SentinelEvent::SwitchMaster { master, old, new } => {
                out.put("master", master);
                out.addr("old_", old);
                out.addr("new_", new);
            }
            SentinelEvent::Sdown { instance, .. } => out.instance(instance),
            SentinelEvent::Odown { instance, quorum, .. } => {
                out.instance(instance);
                if let Some(q) = quorum {
                    out.put("agreeing", q.agreeing);
                    out.put("quorum", q.quorum);
                }
            }
            SentinelEvent::Tilt { .. } => {}
            SentinelEvent::NewEpoch { epoch } => out.put("epoch", epoch),
            SentinelEvent::VoteForLeader { leader, epoch } => {
                out.put("leader", leader);
                out.put("epoch", epoch);
            }
            SentinelEvent::ScriptError {
                path,
                signal,
                exit_code,
            } => {
                out.put("path", path);
                out.put("signal", signal);
                out.put("exit_code", exit_code);
            }
            SentinelEvent::ScriptTimeout { path, pid } => {
                out.put("path", path);
                out.put("pid", pid);
            }
            SentinelEvent::Instance { instance, detail, .. } => {
                out.instance(instance);
                match detail {
                    None => {}
                    Some(Detail::Quorum { quorum }) => out.put("quorum", quorum),
                    Some(Detail::Set { option, value }) => {
                        out.put("option", option);
                        out.put("value", value.as_deref().unwrap_or(""));
                    }
                    Some(Detail::ReportedRole { role }) => out.put("role", role),
                    Some(Detail::AddressSwitch { addr, runid }) => {
                        out.addr("new_", addr);
                        out.put("runid", runid);
                    }
                    Some(Detail::AdditionalMatches { count }) => out.put("count", count),
                    Some(Detail::Text { text }) => out.put("detail", text),
                }
            }
            SentinelEvent::Raw { payload, reason, .. } => {
                out.put("payload", payload);
                out.put("reason", reason);
            }
        }
        out.0
    }

    /// A key equal for the copies of one incident that several Sentinels
    /// publish, to merge them within a short window. It leaves out what
    /// differs between Sentinels: how many agreed on `+odown`, and the master
    /// address a Sentinel that has not yet heard of a failover still prints.
    /// `+switch-master` is keyed by master and new address only, so a
    /// Sentinel that learnt a failover late still merges.
    ///
    /// `None` when the payload cannot tell one Sentinel's event from
    /// another's (`±tilt`, script errors) or did not parse: deliver each.
    pub fn dedup_key(&self) -> Option<String> {
        match self {
            SentinelEvent::SwitchMaster { master, new, .. } => Some(format!("+switch-master {master} {new}")),
            SentinelEvent::Sdown { instance, .. } | SentinelEvent::Odown { instance, .. } => {
                Some(format!("{} {}", self.name(), instance.identity()))
            }
            SentinelEvent::Instance { name, instance, detail } => Some(match detail {
                None => format!("{name} {}", instance.identity()),
                Some(d) => format!("{name} {} {d}", instance.identity()),
            }),
            SentinelEvent::NewEpoch { .. } | SentinelEvent::VoteForLeader { .. } => Some(self.to_string()),
            SentinelEvent::Tilt { .. }
            | SentinelEvent::ScriptError { .. }
            | SentinelEvent::ScriptTimeout { .. }
            | SentinelEvent::Raw { .. } => None,
        }
    }
}

impl fmt::Display for SentinelEvent {
    /// `<channel> <payload>`, the line `redis-cli psubscribe '*'` shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name(), self.payload())
    }
}

fn signed(entered: bool, plus: &'static str, minus: &'static str) -> &'static str {
    if entered { plus } else { minus }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Fields {
    fn put(&mut self, key: &str, value: impl ToString) {
        self.0.insert(key.to_owned(), value.to_string());
    }

    fn addr(&mut self, prefix: &str, addr: &Addr) {
        self.put(&format!("{prefix}ip"), &addr.host);
        self.put(&format!("{prefix}port"), addr.port);
        self.put(&format!("{prefix}addr"), addr);
    }

    fn instance(&mut self, instance: &Instance) {
        self.put("kind", instance.kind);
        self.put("instance", &instance.name);
        self.addr("", &instance.addr);
        self.put("master", instance.master_name());
        self.addr("master_", instance.master_addr());
    }
}

/// Parses one message from a Sentinel's pub/sub. Never panics: a channel
/// that is not a Sentinel event, or a payload that does not parse, gives
/// [`SentinelEvent::Raw`] with the reason.
pub fn parse(channel: &[u8], payload: &[u8]) -> SentinelEvent {
    let raw = |reason: String| SentinelEvent::Raw {
        channel: String::from_utf8_lossy(channel).into_owned(),
        payload: String::from_utf8_lossy(payload).into_owned(),
        reason,
    };
    let Ok(channel_text) = std::str::from_utf8(channel) else {
        return raw("the channel is not UTF-8".to_owned());
    };
    let Some(&(name, shape)) = SPECS.iter().find(|(name, _)| *name == channel_text) else {
        return raw(format!("`{channel_text}` is not a Sentinel event"));
    };
    let Ok(text) = std::str::from_utf8(payload) else {
        return raw("the payload is not UTF-8".to_owned());
    };
    parse_payload(name, shape, text).unwrap_or_else(|reason| raw(format!("malformed {name} payload: {reason}")))
}

/// Parses `<channel> <payload>`, one line of the fixture or of
/// `redis-cli psubscribe '*'` output reassembled.
pub fn parse_line(line: &str) -> SentinelEvent {
    let line = line.trim_end_matches(['\r', '\n']);
    let (channel, payload) = line.split_once(' ').unwrap_or((line, ""));
    parse(channel.as_bytes(), payload.as_bytes())
}

fn parse_payload(name: &'static str, shape: Shape, text: &str) -> Result<SentinelEvent, String> {
    let entered = name.starts_with('+');
    let mut tokens = Tokens::new(text);
    let event = match shape {
        Shape::SwitchMaster => SentinelEvent::SwitchMaster {
            master: tokens.expect("master name")?.to_owned(),
            old: tokens.addr("old master")?,
            new: tokens.addr("new master")?,
        },
        Shape::Sdown => SentinelEvent::Sdown {
            entered,
            instance: Box::new(tokens.instance()?),
        },
        Shape::Odown => {
            let instance = Box::new(tokens.instance()?);
            let quorum = match tokens.next() {
                Some("#quorum") => Some(parse_quorum(tokens.expect("quorum after `#quorum`")?)?),
                _ => None,
            };
            SentinelEvent::Odown {
                entered,
                instance,
                quorum,
            }
        }
        Shape::Tilt => SentinelEvent::Tilt { entered },
        Shape::NewEpoch => SentinelEvent::NewEpoch {
            epoch: number(tokens.expect("epoch")?, "epoch")?,
        },
        Shape::VoteForLeader => SentinelEvent::VoteForLeader {
            leader: tokens.expect("leader run id")?.to_owned(),
            epoch: number(tokens.expect("epoch")?, "epoch")?,
        },
        // The path comes first and may hold spaces: read from the end.
        Shape::ScriptError => {
            let (rest, exit_code) = split_last(text, "exit code")?;
            let (path, signal) = split_last(rest, "signal")?;
            SentinelEvent::ScriptError {
                path: nonempty(path, "script path")?,
                signal: number(signal, "signal")?,
                exit_code: number(exit_code, "exit code")?,
            }
        }
        Shape::ScriptTimeout => {
            let (path, pid) = split_last(text, "pid")?;
            SentinelEvent::ScriptTimeout {
                path: nonempty(path, "script path")?,
                pid: number(pid, "pid")?,
            }
        }
        Shape::Instance => {
            let instance = Box::new(tokens.instance()?);
            let detail = tokens.rest().map(|rest| parse_detail(name, rest)).transpose()?;
            SentinelEvent::Instance { name, instance, detail }
        }
    };
    Ok(event)
}

fn parse_detail(name: &str, rest: &str) -> Result<Detail, String> {
    let mut tokens = Tokens::new(rest);
    let detail = match name {
        "+monitor" => {
            tokens.word("quorum")?;
            Detail::Quorum {
                quorum: number(tokens.expect("quorum")?, "quorum")?,
            }
        }
        // `%s %s` with an empty value prints `<option> `: keep that `Some("")`,
        // it says the option was cleared.
        "+set" => Detail::Set {
            option: tokens.expect("option")?.to_owned(),
            value: tokens
                .remainder()
                .strip_prefix(|c: char| c.is_ascii_whitespace())
                .map(str::to_owned),
        },
        "+role-change" | "-role-change" => {
            for word in ["new", "reported", "role", "is"] {
                tokens.word(word)?;
            }
            match tokens.expect("role")? {
                "master" => Detail::ReportedRole {
                    role: InstanceKind::Master,
                },
                "slave" | "replica" => Detail::ReportedRole {
                    role: InstanceKind::Replica,
                },
                other => return Err(format!("reported role `{other}` is neither master nor slave")),
            }
        }
        "+sentinel-address-switch" => {
            tokens.word("ip")?;
            let host = tokens.expect("new ip")?.to_owned();
            tokens.word("port")?;
            let port = port(tokens.expect("new port")?, "new")?;
            tokens.word("for")?;
            Detail::AddressSwitch {
                addr: Addr { host, port },
                runid: tokens.expect("run id")?.to_owned(),
            }
        }
        "+sentinel-address-update" => Detail::AdditionalMatches {
            count: number(tokens.expect("count")?, "count")?,
        },
        _ => Detail::Text { text: rest.to_owned() },
    };
    Ok(detail)
}

fn parse_quorum(text: &str) -> Result<Quorum, String> {
    let (agreeing, quorum) = text
        .split_once('/')
        .ok_or_else(|| format!("quorum `{text}` is not <agreeing>/<quorum>"))?;
    Ok(Quorum {
        agreeing: number(agreeing, "agreeing count")?,
        quorum: number(quorum, "quorum")?,
    })
}

/// Whitespace-separated words of a payload, with the unread rest at hand.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Tokens { rest: text }
    }

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let end = text.find(|c: char| c.is_ascii_whitespace()).unwrap_or(text.len());
        let (token, rest) = text.split_at(end);
        self.rest = rest;
        (!token.is_empty()).then_some(token)
    }

    fn peek(&self) -> Option<&'a str> {
        Tokens { rest: self.rest }.next()
    }

    fn expect(&mut self, what: &str) -> Result<&'a str, String> {
        self.next().ok_or_else(|| format!("missing {what}"))
    }

    fn word(&mut self, word: &str) -> Result<(), String> {
        match self.next() {
            Some(found) if found == word => Ok(()),
            Some(found) => Err(format!("expected `{word}`, found `{found}`")),
            None => Err(format!("missing `{word}`")),
        }
    }

    /// The unread text less its leading whitespace; `None` when nothing
    /// but whitespace is left.
    fn rest(&self) -> Option<&'a str> {
        let rest = self.rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        (!rest.trim_end_matches(|c: char| c.is_ascii_whitespace()).is_empty()).then_some(rest)
    }

    /// The unread text as it is, separator included.
    fn remainder(&self) -> &'a str {
        self.rest
    }

    fn addr(&mut self, what: &str) -> Result<Addr, String> {
        let host = self.expect(&format!("{what} ip"))?.to_owned();
        let port = port(self.expect(&format!("{what} port"))?, what)?;
        Ok(Addr { host, port })
    }

    fn instance(&mut self) -> Result<Instance, String> {
        let word = self.expect("instance type")?;
        let kind = InstanceKind::from_wire(word)
            .ok_or_else(|| format!("instance type `{word}` is not master, slave or sentinel"))?;
        let name = self.expect("instance name")?.to_owned();
        let addr = self.addr("instance")?;
        let master = match (kind, self.peek()) {
            (InstanceKind::Master, Some("@")) => return Err("a master's details name no other master".to_owned()),
            (InstanceKind::Master, _) => None,
            (_, Some("@")) => {
                self.next();
                let name = self.expect("master name after `@`")?.to_owned();
                let addr = self.addr("master")?;
                Some(MasterRef { name, addr })
            }
            (_, _) => return Err(format!("a {kind}'s details must name its master after `@`")),
        };
        Ok(Instance {
            kind,
            name,
            addr,
            master,
        })
    }
}

/// Splits off the last word, for payloads read from the end.
fn split_last<'a>(text: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    text.rsplit_once(|c: char| c.is_ascii_whitespace())
        .ok_or_else(|| format!("missing {what}"))
}

fn nonempty(text: &str, what: &str) -> Result<String, String> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if text.is_empty() {
        return Err(format!("missing {what}"));
    }
    Ok(text.to_owned())
}

/// A decimal number as Sentinel prints it: digits only (`str::parse`
/// would also take a leading `+`).
fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} `{text}` is not a number"));
    }
    text.parse().map_err(|_| format!("{what} `{text}` is out of range"))
}

fn port(text: &str, what: &str) -> Result<u16, String> {
    number(text, &format!("{what} port"))
}

/// Splits `host:port` (`[v6]:port` too).
pub fn parse_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok().filter(|p| *p > 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What three Redis 7.0.15 Sentinels published through two failover
    /// scenarios (how it was made: the file's header).
    const CAPTURE: &str = include_str!("../../tests/fixtures/sentinel/events.txt");

    /// Events and variants the capture could not trigger, written from
    /// `sentinel.c` (7.0) and, for the Redis 2.x ones, from the documentation.
    const HANDWRITTEN: &[&str] = &[
        // A replica that takes SLAVEOF but never reports the new master in time.
        "-slave-reconf-sent-timeout slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379",
        // fork() failed: reported as signal 99.
        "-script-error /opt/redis/notify.sh 99 0",
        "+failover-detected master mymaster 127.0.0.1 6379",
        "-dup-sentinel sentinel 127.0.0.1:26380 127.0.0.1 26380 @ mymaster 127.0.0.1 6379 \
         #duplicate of 127.0.0.1:26380 or 8ab8f0b1fc1dcb2b8a2f6e0d5d6e0a2f7b0c9e11",
    ];

    fn captured_lines() -> impl Iterator<Item = &'static str> {
        CAPTURE.lines().filter(|l| !l.is_empty() && !l.starts_with('#'))
    }

    fn event(line: &str) -> SentinelEvent {
        let e = parse_line(line);
        assert!(!matches!(e, SentinelEvent::Raw { .. }), "{line:?} gave {e:?}");
        e
    }

    fn fields(line: &str) -> BTreeMap<String, String> {
        event(line).fields()
    }

    fn field<'a>(fields: &'a BTreeMap<String, String>, key: &str) -> &'a str {
        fields
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no `{key}` in {fields:?}"))
    }

    fn reason(channel: &[u8], payload: &[u8]) -> String {
        match parse(channel, payload) {
            SentinelEvent::Raw { reason, .. } => reason,
            other => panic!(
                "{:?} {:?} parsed as {other:?}",
                String::from_utf8_lossy(channel),
                String::from_utf8_lossy(payload)
            ),
        }
    }

    #[test]
    fn every_captured_line_parses_to_a_typed_event_and_prints_back_the_same() {
        let mut count = 0;
        for line in captured_lines().chain(HANDWRITTEN.iter().copied()) {
            assert_eq!(event(line).to_string(), line);
            count += 1;
        }
        assert!(count > 400, "the capture shrank to {count} lines");
    }

    #[test]
    fn the_capture_and_the_handwritten_lines_cover_every_known_event() {
        let seen: std::collections::BTreeSet<String> = captured_lines()
            .chain(HANDWRITTEN.iter().copied())
            .map(|l| event(l).name().to_owned())
            .collect();
        let missing: Vec<_> = KNOWN_EVENTS.iter().filter(|n| !seen.contains(**n)).collect();
        assert!(missing.is_empty(), "no line for {missing:?}");
    }

    #[test]
    fn known_events_are_the_table_without_duplicates() {
        assert_eq!(KNOWN_EVENTS.len(), SPECS.len());
        for (i, name) in KNOWN_EVENTS.iter().enumerate() {
            assert_eq!(*name, SPECS[i].0);
            assert!(name.starts_with(['+', '-']), "{name}");
            assert!(!KNOWN_EVENTS[i + 1..].contains(name), "{name} twice");
            assert!(is_known_event(name));
        }
        assert!(!is_known_event("__sentinel__:hello"));
        assert!(
            !is_known_event("+script-child"),
            "debug-level events are never published"
        );
    }

    #[test]
    fn switch_master_gives_old_and_new_address() {
        let e = event("+switch-master mymaster 127.0.0.1 35001 127.0.0.1 51333");
        let f = e.fields();
        assert_eq!(e.master_name(), Some("mymaster"));
        assert_eq!(field(&f, "event"), "+switch-master");
        assert_eq!(field(&f, "old_ip"), "127.0.0.1");
        assert_eq!(field(&f, "old_port"), "35001");
        assert_eq!(field(&f, "new_addr"), "127.0.0.1:51333");
        assert_eq!(field(&f, "new_port"), "51333");
        let SentinelEvent::SwitchMaster { new, .. } = e else {
            unreachable!()
        };
        assert_eq!(
            new,
            Addr {
                host: "127.0.0.1".into(),
                port: 51333
            }
        );
    }

    #[test]
    fn instance_details_of_master_replica_and_sentinel() {
        let master = event("+sdown master mymaster 127.0.0.1 35001");
        let inst = master.instance().unwrap();
        assert_eq!(
            (inst.kind, inst.name.as_str(), inst.addr.port),
            (InstanceKind::Master, "mymaster", 35001)
        );
        assert_eq!(inst.master, None);
        assert_eq!(master.master_name(), Some("mymaster"));

        let f = fields("+sdown slave 127.0.0.1:35001 127.0.0.1 35001 @ mymaster 127.0.0.1 51333");
        assert_eq!(field(&f, "kind"), "replica");
        assert_eq!(field(&f, "instance"), "127.0.0.1:35001");
        assert_eq!(field(&f, "addr"), "127.0.0.1:35001");
        assert_eq!(field(&f, "master"), "mymaster");
        assert_eq!(field(&f, "master_addr"), "127.0.0.1:51333");

        // Redis 7 names a Sentinel by its run id.
        let f = fields(
            "+sdown sentinel 876aebb89c70fc41c39eb698e68d58a50bd0d00d 127.0.0.1 35907 @ mymaster 127.0.0.1 35001",
        );
        assert_eq!(field(&f, "kind"), "sentinel");
        assert_eq!(field(&f, "instance"), "876aebb89c70fc41c39eb698e68d58a50bd0d00d");
        assert_eq!(field(&f, "port"), "35907");
        assert_eq!(field(&f, "master_port"), "35001");
        assert_eq!(event("-sdown master mymaster 127.0.0.1 35001").name(), "-sdown");
    }

    #[test]
    fn odown_carries_agreeing_sentinels_and_quorum() {
        let e = event("+odown master mymaster 127.0.0.1 35001 #quorum 3/2");
        let SentinelEvent::Odown { entered, quorum, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(*entered);
        assert_eq!(*quorum, Some(Quorum { agreeing: 3, quorum: 2 }));
        let f = e.fields();
        assert_eq!((field(&f, "agreeing"), field(&f, "quorum")), ("3", "2"));
        let e = event("-odown master mymaster 127.0.0.1 35001");
        assert!(matches!(
            e,
            SentinelEvent::Odown {
                entered: false,
                quorum: None,
                ..
            }
        ));
    }

    #[test]
    fn trailers_after_the_instance_details() {
        let f = fields("+monitor master mymaster 127.0.0.1 35001 quorum 2");
        assert_eq!(field(&f, "quorum"), "2");

        let f = fields("+set master mymaster 127.0.0.1 35001 down-after-milliseconds 1000");
        assert_eq!(
            (field(&f, "option"), field(&f, "value")),
            ("down-after-milliseconds", "1000")
        );
        let f = fields("+set master othermaster 127.0.0.1 32869 auth-pass ******");
        assert_eq!(field(&f, "value"), "******");
        let f = fields("+set master othermaster 127.0.0.1 32869 rename-command CONFIG CONFIG");
        assert_eq!(field(&f, "value"), "CONFIG CONFIG");
        let cleared = event("+set master mymaster 127.0.0.1 52539 notification-script ");
        let SentinelEvent::Instance {
            detail: Some(Detail::Set { value, .. }),
            ..
        } = &cleared
        else {
            panic!()
        };
        assert_eq!(value.as_deref(), Some(""));

        let f = fields(
            "-role-change slave 127.0.0.1:35001 127.0.0.1 35001 @ mymaster 127.0.0.1 51333 new reported role is master",
        );
        assert_eq!(field(&f, "role"), "master");
        let f = fields(
            "+role-change slave 127.0.0.1:35001 127.0.0.1 35001 @ mymaster 127.0.0.1 51333 new reported role is slave",
        );
        assert_eq!(field(&f, "role"), "replica");

        let f = fields(
            "+sentinel-address-switch master mymaster 127.0.0.1 52539 ip 127.0.0.1 port 51435 \
             for b21487fdac1fd060d599f3ca25a8fdd1d3d9d812",
        );
        assert_eq!(field(&f, "new_addr"), "127.0.0.1:51435");
        assert_eq!(field(&f, "runid"), "b21487fdac1fd060d599f3ca25a8fdd1d3d9d812");
        assert_eq!(field(&f, "kind"), "master");
        let f = fields(
            "+sentinel-address-update sentinel b21487fdac1fd060d599f3ca25a8fdd1d3d9d812 127.0.0.1 51435 \
             @ mymaster 127.0.0.1 52539 1 additional matching instances",
        );
        assert_eq!(field(&f, "count"), "1");
        let f = fields(HANDWRITTEN[3]);
        assert!(field(&f, "detail").starts_with("#duplicate of 127.0.0.1:26380"));
    }

    #[test]
    fn events_that_are_not_instance_details() {
        assert_eq!(event("+new-epoch 3"), SentinelEvent::NewEpoch { epoch: 3 });
        let f = fields("+vote-for-leader 876aebb89c70fc41c39eb698e68d58a50bd0d00d 1");
        assert_eq!(
            (field(&f, "leader"), field(&f, "epoch")),
            ("876aebb89c70fc41c39eb698e68d58a50bd0d00d", "1")
        );
        assert_eq!(event("+tilt #tilt mode entered"), SentinelEvent::Tilt { entered: true });
        assert_eq!(event("-tilt #tilt mode exited"), SentinelEvent::Tilt { entered: false });
        assert_eq!(event("-tilt #tilt mode exited").master_name(), None);
        assert_eq!(
            event("-script-error /opt/my scripts/notify.sh 0 2"),
            SentinelEvent::ScriptError {
                path: "/opt/my scripts/notify.sh".into(),
                signal: 0,
                exit_code: 2
            }
        );
        let f = fields("-script-timeout /tmp/hang.sh 23646");
        assert_eq!((field(&f, "path"), field(&f, "pid")), ("/tmp/hang.sh", "23646"));
    }

    #[test]
    fn dedup_key_merges_what_each_sentinel_publishes_of_one_incident() {
        let key = |line: &str| event(line).dedup_key().unwrap();
        // Two Sentinels saw the master at different addresses before the switch.
        assert_eq!(
            key("+switch-master mymaster 127.0.0.1 52367 127.0.0.1 52539"),
            key("+switch-master mymaster 127.0.0.1 50885 127.0.0.1 52539"),
        );
        assert_ne!(
            key("+switch-master mymaster 127.0.0.1 52367 127.0.0.1 52539"),
            key("+switch-master mymaster 127.0.0.1 52367 127.0.0.1 50885"),
        );
        assert_eq!(
            key("+odown master mymaster 127.0.0.1 35001 #quorum 3/2"),
            key("+odown master mymaster 127.0.0.1 35001 #quorum 2/2"),
        );
        assert_ne!(
            key("+odown master mymaster 127.0.0.1 35001 #quorum 3/2"),
            key("-odown master mymaster 127.0.0.1 35001"),
        );
        assert_ne!(
            key("+odown master mymaster 127.0.0.1 35001 #quorum 3/2"),
            key("+odown master mymaster 127.0.0.1 51333 #quorum 3/2"),
        );
        assert_eq!(
            key("+sdown slave 127.0.0.1:34293 127.0.0.1 34293 @ mymaster 127.0.0.1 35001"),
            key("+sdown slave 127.0.0.1:34293 127.0.0.1 34293 @ mymaster 127.0.0.1 51333"),
        );
        assert_ne!(
            key("-role-change slave 127.0.0.1:1 127.0.0.1 1 @ m 127.0.0.1 2 new reported role is master"),
            key("+role-change slave 127.0.0.1:1 127.0.0.1 1 @ m 127.0.0.1 2 new reported role is slave"),
        );
        assert_eq!(key("+new-epoch 2"), key("+new-epoch 2"));
        assert_eq!(event("+tilt #tilt mode entered").dedup_key(), None);
        assert_eq!(event("-script-error /x 0 2").dedup_key(), None);
        assert_eq!(parse(b"+nope", b"").dedup_key(), None);
    }

    #[test]
    fn stays_small_enough_to_travel_in_every_event() {
        assert!(
            std::mem::size_of::<SentinelEvent>() <= 96,
            "{}",
            std::mem::size_of::<SentinelEvent>()
        );
    }

    #[test]
    fn serializes_with_a_type_tag() {
        let json = serde_json::to_value(event("+switch-master mymaster 127.0.0.1 1 127.0.0.1 2")).unwrap();
        assert_eq!(json["type"], "switch_master");
        assert_eq!(json["new"]["port"], 2);
        let json =
            serde_json::to_value(event("+convert-to-slave slave 127.0.0.1:1 127.0.0.1 1 @ m 127.0.0.1 2")).unwrap();
        assert_eq!(json["type"], "instance");
        assert_eq!(json["name"], "+convert-to-slave");
        assert_eq!(json["instance"]["kind"], "replica");
    }

    #[test]
    fn unknown_channels_and_bad_bytes_are_raw_with_a_reason() {
        assert!(
            reason(
                b"__sentinel__:hello",
                b"127.0.0.1,26379,abc,0,mymaster,127.0.0.1,6379,0"
            )
            .contains("not a Sentinel event")
        );
        assert!(reason(b"+SDOWN", b"master m 127.0.0.1 1").contains("not a Sentinel event"));
        assert!(reason(b"", b"").contains("not a Sentinel event"));
        assert!(reason(b"+sdown\xff", b"master m 127.0.0.1 1").contains("channel is not UTF-8"));
        assert!(reason(b"+sdown", b"master m\xc3 127.0.0.1 1").contains("payload is not UTF-8"));
        let SentinelEvent::Raw { channel, payload, .. } = parse(b"+x\xff", b"a\xffb") else {
            panic!()
        };
        assert_eq!((channel.as_str(), payload.as_str()), ("+x\u{fffd}", "a\u{fffd}b"));
    }

    #[test]
    fn malformed_payloads_are_raw_with_a_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("+sdown", "", "missing instance type"),
            ("+switch-master", "", "missing master name"),
            ("+new-epoch", "", "missing epoch"),
            ("+sdown", "   ", "missing instance type"),
            ("+sdown", "unknown m 127.0.0.1 1", "not master, slave or sentinel"),
            ("+sdown", "master m 127.0.0.1", "missing instance port"),
            ("+sdown", "master m 127.0.0.1 65536", "out of range"),
            ("+sdown", "master m 127.0.0.1 99999999999999999999999", "out of range"),
            ("+sdown", "master m 127.0.0.1 -1", "not a number"),
            ("+sdown", "master m 127.0.0.1 +80", "not a number"),
            ("+sdown", "master m 127.0.0.1 6379x", "not a number"),
            (
                "+sdown",
                "master m 127.0.0.1 6379 @ n 127.0.0.1 1",
                "name no other master",
            ),
            (
                "+sdown",
                "slave 127.0.0.1:1 127.0.0.1 1",
                "must name its master after `@`",
            ),
            (
                "+sdown",
                "slave 127.0.0.1:1 127.0.0.1 1 mymaster 127.0.0.1 2",
                "must name its master after `@`",
            ),
            (
                "+sdown",
                "slave 127.0.0.1:1 127.0.0.1 1 @",
                "missing master name after `@`",
            ),
            (
                "+sdown",
                "slave 127.0.0.1:1 127.0.0.1 1 @ mymaster",
                "missing master ip",
            ),
            (
                "+sdown",
                "slave 127.0.0.1:1 127.0.0.1 1 @ mymaster 127.0.0.1",
                "missing master port",
            ),
            ("+odown", "master m 127.0.0.1 1 #quorum", "missing quorum"),
            ("+odown", "master m 127.0.0.1 1 #quorum 2", "not <agreeing>/<quorum>"),
            ("+odown", "master m 127.0.0.1 1 #quorum 2/", "not a number"),
            ("+odown", "master m 127.0.0.1 1 #quorum a/b", "not a number"),
            ("+new-epoch", "18446744073709551616", "out of range"),
            ("+new-epoch", "-1", "not a number"),
            ("+vote-for-leader", "abc", "missing epoch"),
            ("+monitor", "master m 127.0.0.1 1 quorum", "missing quorum"),
            ("+monitor", "master m 127.0.0.1 1 votes 2", "expected `quorum`"),
            (
                "+role-change",
                "slave a 127.0.0.1 1 @ m 127.0.0.1 2 new reported role is primary",
                "neither master",
            ),
            (
                "+sentinel-address-switch",
                "master m 127.0.0.1 1 ip 127.0.0.1 port x for r",
                "not a number",
            ),
            ("-script-error", "/x 0", "missing signal"),
            ("-script-error", "/x 0 two", "not a number"),
            ("-script-timeout", "/x", "missing pid"),
            ("-script-timeout", " 1 ", "missing pid"),
        ];
        for (channel, payload, expected) in cases {
            let reason = reason(channel.as_bytes(), payload.as_bytes());
            assert!(
                reason.contains(expected),
                "{channel} {payload:?}: {reason:?} lacks {expected:?}"
            );
            assert!(reason.starts_with(&format!("malformed {channel} payload")), "{reason}");
        }
    }

    #[test]
    fn extra_fields_are_tolerated() {
        let e = event("+switch-master mymaster 127.0.0.1 1 127.0.0.1 2 9 extra");
        assert_eq!(e.to_string(), "+switch-master mymaster 127.0.0.1 1 127.0.0.1 2");
        assert_eq!(
            event("+sdown master m 127.0.0.1 1 #runid abc").to_string(),
            "+sdown master m 127.0.0.1 1"
        );
        assert_eq!(event("+new-epoch 4 5").to_string(), "+new-epoch 4");
        assert_eq!(event("+tilt anything at all").to_string(), "+tilt #tilt mode entered");
        assert_eq!(event("+tilt").to_string(), "+tilt #tilt mode entered");
        let e = event("+failover-end master m 127.0.0.1 1 #new in 9.0");
        assert_eq!(field(&e.fields(), "detail"), "#new in 9.0");
        // Port 0 is what Sentinel prints for a Sentinel whose address it invalidated.
        assert_eq!(
            event("+sdown sentinel r 127.0.0.1 0 @ m 127.0.0.1 1")
                .instance()
                .unwrap()
                .addr
                .port,
            0
        );
        // Hostnames and IPv6 addresses, as `announce-hostnames` and IPv6 setups print them.
        let f = fields("+slave slave [::1]:6380 ::1 6380 @ mymaster redis-0.example.com 6379");
        assert_eq!(field(&f, "addr"), "[::1]:6380");
        assert_eq!(field(&f, "master_ip"), "redis-0.example.com");
    }

    #[test]
    fn no_prefix_of_a_captured_line_panics() {
        for line in captured_lines().chain(HANDWRITTEN.iter().copied()) {
            let (channel, payload) = line.split_once(' ').unwrap();
            for cut in 0..=payload.len() {
                let e = parse(channel.as_bytes(), &payload.as_bytes()[..cut]);
                check_consistent(&e);
            }
            for cut in 0..=channel.len() {
                check_consistent(&parse(&channel.as_bytes()[..cut], payload.as_bytes()));
            }
        }
    }

    /// Whatever parsed prints back to a payload that parses to the same event,
    /// and every accessor answers.
    fn check_consistent(e: &SentinelEvent) {
        let _ = (e.fields(), e.dedup_key(), e.master_name(), e.to_string());
        match e {
            SentinelEvent::Raw { reason, .. } => assert!(!reason.is_empty()),
            _ => {
                assert!(is_known_event(e.name()));
                let again = parse(e.name().as_bytes(), e.payload().as_bytes());
                assert_eq!(&again, e, "{e} does not parse back to itself");
                assert!(
                    e.dedup_key().is_some()
                        || matches!(e.name(), "+tilt" | "-tilt" | "-script-error" | "-script-timeout")
                );
            }
        }
    }

    /// xorshift64: random enough for fuzzing, and the same every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        const ALPHABET: &[u8] =
            b"  @#/:.0123456789 masterslave sentinel quorum ip port for new reported role is\t\xff\xc3\xa9";
        let lines: Vec<&str> = captured_lines().collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut typed = 0;
        for _ in 0..100_000 {
            let channel: Vec<u8> = match rng.below(10) {
                0 => (0..rng.below(24)).map(|_| rng.next() as u8).collect(),
                _ => KNOWN_EVENTS[rng.below(KNOWN_EVENTS.len())].as_bytes().to_vec(),
            };
            let payload: Vec<u8> = if rng.below(2) == 0 {
                (0..rng.below(80))
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect()
            } else {
                // A captured payload with a few bytes replaced, inserted or removed.
                let line = lines[rng.below(lines.len())];
                let mut bytes = line.split_once(' ').map_or("", |(_, p)| p).as_bytes().to_vec();
                for _ in 0..rng.below(4) {
                    let at = rng.below(bytes.len() + 1);
                    match rng.below(3) {
                        0 if at < bytes.len() => bytes[at] = ALPHABET[rng.below(ALPHABET.len())],
                        1 => bytes.insert(at, rng.next() as u8),
                        _ if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => {}
                    }
                }
                bytes
            };
            let e = parse(&channel, &payload);
            check_consistent(&e);
            typed += usize::from(!matches!(e, SentinelEvent::Raw { .. }));
        }
        // The fuzz must reach the parsers, not only bounce off as Raw.
        assert!(typed > 10_000, "only {typed} typed events");
    }
}
