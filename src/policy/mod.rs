//! Which Redis commands a playbook (or a probe) may send.
//!
//! The playbook policy denies what can do harm on a production server:
//! commands that destroy data, block the server or cut off its clients,
//! erase what an investigation reads, change who may connect or how data is
//! persisted, or run other commands out of sight (EVAL, FCALL, MODULE).
//! `CONFIG SET` is an allow list of the parameters a remediation needs. A
//! name that is not a standard Redis command is denied: that is how a
//! renamed destructive command would look. The config allows a denied form
//! by name (`[playbooks] allow_commands`) and declares the server's renamed
//! commands (`renamed_commands`), which are then judged by every rule of the
//! command they are.
//!
//! The check runs where a command is sent (`api::redis`), so no helper, dry
//! run or transaction goes around it. `CONFIG SET maxmemory` also depends
//! on the server's memory at that moment: [`Allowed::maxmemory`] tells the
//! sender to read it and ask [`CommandPolicy::check_maxmemory`].

mod commands;
mod config_set;
mod hosts;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub use commands::is_standard;
pub use config_set::MAXMEMORY_HEADROOM;
pub use hosts::{HttpAllow, show_host};

use crate::glob::Glob;

/// Whole commands denied unless allowed.
const DENIED_COMMANDS: &[(&str, &str)] = &[
    ("FLUSHALL", "deletes every key in every database"),
    ("FLUSHDB", "deletes every key in the database"),
    ("SHUTDOWN", "stops the server"),
    ("DEBUG", "can crash or stall the server"),
    ("KEYS", "blocks the server while it walks every key; use SCAN"),
    (
        "SAVE",
        "blocks the server until the snapshot is on disk; BGSAVE is the safe form",
    ),
    (
        "BGREWRITEAOF",
        "forks the server to rewrite its append-only file, at the cost of memory and disk",
    ),
    ("EVAL", "runs a script the policy cannot inspect"),
    ("EVALSHA", "runs a script the policy cannot inspect"),
    ("EVAL_RO", "runs a script the policy cannot inspect"),
    ("EVALSHA_RO", "runs a script the policy cannot inspect"),
    ("FCALL", "runs a function the policy cannot inspect"),
    ("FCALL_RO", "runs a function the policy cannot inspect"),
    ("FUNCTION", "loads code into the server"),
    ("SCRIPT", "loads code into the server"),
    ("MODULE", "loads code into the server"),
    ("ACL", "changes who may do what"),
    ("REPLICAOF", "changes the replication topology"),
    ("SLAVEOF", "changes the replication topology"),
    ("FAILOVER", "changes the replication topology"),
    ("REPLCONF", "speaks the replication protocol, as a replica would"),
    ("MIGRATE", "moves keys to another server"),
    ("RESTORE-ASKING", "is a cluster-internal RESTORE"),
    ("SWAPDB", "swaps whole databases"),
    ("MONITOR", "streams every command; it never returns"),
    ("SYNC", "streams replication data; it never returns"),
    ("PSYNC", "streams replication data; it never returns"),
    ("SUBSCRIBE", "never returns"),
    ("PSUBSCRIBE", "never returns"),
    ("SSUBSCRIBE", "never returns"),
];

/// Subcommands denied unless allowed.
const DENIED_SUBCOMMANDS: &[(&str, &str, &str)] = &[
    ("CLIENT", "PAUSE", "stops every client's commands"),
    (
        "CONFIG",
        "REWRITE",
        "writes whatever was set at run time into redis.conf",
    ),
    ("CONFIG", "RESETSTAT", "erases the counters rules and reports depend on"),
    ("SLOWLOG", "RESET", "erases the slow log an investigation reads"),
    ("LATENCY", "RESET", "erases the latency history an investigation reads"),
    ("CLUSTER", "FAILOVER", "makes a replica take over its shard's slots"),
    (
        "CLUSTER",
        "RESET",
        "makes the node forget the cluster (a hard reset gives it a new id)",
    ),
    (
        "CLUSTER",
        "FORGET",
        "removes a node from this node's view of the cluster",
    ),
    ("CLUSTER", "ADDSLOTS", "changes which node serves a slot"),
    ("CLUSTER", "ADDSLOTSRANGE", "changes which node serves a slot"),
    (
        "CLUSTER",
        "DELSLOTS",
        "leaves slots unserved: their keys become unreachable",
    ),
    (
        "CLUSTER",
        "DELSLOTSRANGE",
        "leaves slots unserved: their keys become unreachable",
    ),
    ("CLUSTER", "SETSLOT", "moves slots between nodes"),
    ("CLUSTER", "MEET", "joins a node to the cluster"),
    ("CLUSTER", "FLUSHSLOTS", "unassigns every slot of the node"),
    (
        "CLUSTER",
        "REPLICATE",
        "makes the node a replica of another master, dropping its data",
    ),
];

/// Probes may only read, and only commands that answer with a number or a
/// short value.
const READ_ONLY: &[&str] = &[
    "LLEN",
    "SCARD",
    "ZCARD",
    "HLEN",
    "XLEN",
    "STRLEN",
    "EXISTS",
    "DBSIZE",
    "PFCOUNT",
    "TTL",
    "PTTL",
    "GET",
    "HGET",
    "ZSCORE",
    "ZCOUNT",
    "SISMEMBER",
    "LINDEX",
    "TYPE",
    "HEXISTS",
    "ZRANK",
    "GETBIT",
    "BITCOUNT",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    ReadOnly,
}

/// The denied forms the rules below the tables name, as `allow_commands`
/// writes them; `CONFIG SET` may take a parameter pattern.
const RULE_FORMS: &[(&str, Option<&str>)] = &[
    ("CLUSTER", None),
    ("CLIENT", Some("KILL")),
    ("CONFIG", Some("SET")),
    ("RESTORE", Some("REPLACE")),
    ("WAIT", None),
];

/// One entry of `[playbooks] allow_commands`: a command, a subcommand or
/// option of it, and for `CONFIG SET` a parameter pattern. An entry allows
/// the one form it names, never more: `CONFIG` does not allow `CONFIG SET
/// requirepass`, so that allowing a (renamed) command by its name never
/// skips the rules of its subcommands. `CONFIG SET` alone allows every
/// parameter.
#[derive(Debug, Clone)]
struct AllowEntry {
    command: String,
    sub: Option<String>,
    param: Option<Glob>,
}

#[derive(Debug, Clone)]
pub struct CommandPolicy {
    mode: Mode,
    allowed: Vec<AllowEntry>,
    /// `[playbooks] renamed_commands` turned round: the name the server
    /// knows a command by → its standard name, both upper-cased.
    renamed: HashMap<String, String>,
}

/// A command the policy lets through, and what the sender must still do.
#[must_use = "a CONFIG SET maxmemory is allowed only once its bounds are checked"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Its standard name, upper-cased: `CONFIG` for a renamed `CFG_9f8e`.
    pub command: String,
    /// It only reads, so a dry run sends it.
    pub read_only: bool,
    /// It sets `maxmemory` to this many bytes, which is allowed only within
    /// the bounds [`CommandPolicy::check_maxmemory`] sets from the server's
    /// memory, read just before the command is sent.
    pub maxmemory: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyDenied {
    pub command: String,
    pub policy: &'static str,
    pub reason: String,
    /// What to write in the config to allow it: `add "SAVE" to [playbooks]
    /// allow_commands`. `None` where the config cannot (probes).
    pub allow_hint: Option<String>,
}

impl fmt::Display for PolicyDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is denied by the {} command policy: {}",
            self.command, self.policy, self.reason
        )?;
        if let Some(hint) = &self.allow_hint {
            write!(f, " (to allow it, {hint})")?;
        }
        Ok(())
    }
}

/// The hint of a form `allow_commands` can allow.
fn allow_commands_hint(form: &str) -> String {
    format!("add \"{form}\" to [playbooks] allow_commands")
}

impl CommandPolicy {
    /// The playbook policy with `allow_commands` and no renamed commands.
    pub fn playbook(allow: &[String]) -> Self {
        Self::playbook_with_renames(allow, &BTreeMap::new())
    }

    /// `renamed_commands` maps a standard name to the name the server knows
    /// it by, as redis.conf's `rename-command CONFIG CFG_9f8e` does.
    pub fn playbook_with_renames(allow: &[String], renamed_commands: &BTreeMap<String, String>) -> Self {
        let renamed: HashMap<String, String> = renamed_commands
            .iter()
            .map(|(standard, new)| (new.trim().to_ascii_uppercase(), standard.trim().to_ascii_uppercase()))
            .collect();
        let allowed = allow.iter().filter_map(|a| allow_entry(a, &renamed)).collect();
        CommandPolicy {
            mode: Mode::Default,
            allowed,
            renamed,
        }
    }

    /// The probe policy: a short list of read-only commands and nothing else.
    pub fn read_only() -> Self {
        CommandPolicy {
            mode: Mode::ReadOnly,
            allowed: Vec::new(),
            renamed: HashMap::new(),
        }
    }

    fn name(&self) -> &'static str {
        match self.mode {
            Mode::Default => "playbook",
            Mode::ReadOnly => "read-only probe",
        }
    }

    /// Checks a command given as its arguments, e.g. `["MEMORY", "PURGE"]`.
    pub fn check<S: AsRef<str>>(&self, args: &[S]) -> Result<Allowed, PolicyDenied> {
        let Some(first) = args.first() else {
            return Err(self.deny("", "an empty command".into(), None));
        };
        // Case tricks ("fLuShAlL") and stray whitespace must not get past the policy.
        let name = first.as_ref().trim().to_ascii_uppercase();
        let rest: Vec<String> = args[1..]
            .iter()
            .map(|a| a.as_ref().trim().to_ascii_uppercase())
            .collect();
        if self.mode == Mode::ReadOnly {
            return if READ_ONLY.contains(&name.as_str()) {
                Ok(Allowed {
                    command: name,
                    read_only: true,
                    maxmemory: None,
                })
            } else {
                Err(self.deny(
                    &name,
                    format!("only these commands may be probes: {}", READ_ONLY.join(", ")),
                    None,
                ))
            };
        }
        // A renamed command is judged as the command it is, by every rule.
        let (command, alias) = match self.renamed.get(&name) {
            Some(standard) => (standard.clone(), Some(name)),
            None => (name, None),
        };
        if !commands::is_standard(&command) {
            return Err(self.deny(
                &command,
                "it is not a standard Redis command (a renamed command cannot be used to get around the policy)".into(),
                Some(format!(
                    "declare it in [playbooks] renamed_commands as the command the server renamed, e.g. \
                     renamed_commands = {{ FLUSHDB = \"{command}\" }}: it is then judged as that command"
                )),
            ));
        }
        let sub = rest.first().map(String::as_str);
        match self.judge(&command, sub, &rest) {
            Ok(maxmemory) => Ok(Allowed {
                read_only: commands::is_read_only(&command, sub),
                command,
                maxmemory,
            }),
            Err(mut denied) => {
                if let Some(alias) = alias {
                    denied.reason.push_str(&format!(" (`{alias}` is {command}, renamed)"));
                }
                Err(denied)
            }
        }
    }

    /// The rules of a standard command; `Some(bytes)` when it sets a
    /// `maxmemory` that must still be checked against the server.
    fn judge(&self, command: &str, sub: Option<&str>, rest: &[String]) -> Result<Option<u64>, PolicyDenied> {
        if let Some((_, why)) = DENIED_COMMANDS.iter().find(|(c, _)| *c == command)
            && !self.allows(command, None, None)
        {
            return Err(self.deny(command, (*why).into(), Some(allow_commands_hint(command))));
        }
        if let Some((_, sub, why)) = DENIED_SUBCOMMANDS
            .iter()
            .find(|(c, s, _)| *c == command && Some(*s) == sub)
            && !self.allows(command, Some(sub), None)
        {
            let form = format!("{command} {sub}");
            return Err(self.deny(&form, (*why).into(), Some(allow_commands_hint(&form))));
        }
        match (command, sub) {
            ("CLIENT", Some("KILL")) => {
                // `CLIENT KILL ID 42` ends one connection the playbook chose;
                // every other form (ADDR, USER, TYPE, SKIPME, MAXAGE, the old
                // `CLIENT KILL ip:port`) can match many.
                let one_by_id = rest.len() == 3 && rest[1] == "ID" && rest[2].parse::<u64>().is_ok();
                if one_by_id || self.allows("CLIENT", Some("KILL"), None) {
                    Ok(None)
                } else {
                    Err(self.deny(
                        "CLIENT KILL",
                        "can drop every application connection at once; only `CLIENT KILL ID <id>` (one client, \
                         by its id) is allowed"
                            .into(),
                        Some(allow_commands_hint("CLIENT KILL")),
                    ))
                }
            }
            ("CONFIG", Some("SET")) => self.config_set(&rest[1..]),
            // Reads (INFO, NODES, SHARDS, ...) pass; a subcommand that is
            // neither a read nor a denied form above (BUMPEPOCH, SAVECONFIG,
            // SET-CONFIG-EPOCH, ...) changes cluster state in ways a
            // remediation has no business with.
            ("CLUSTER", sub)
                if !commands::is_read_only("CLUSTER", sub)
                    && !DENIED_SUBCOMMANDS
                        .iter()
                        .any(|(c, s, _)| *c == "CLUSTER" && Some(*s) == sub)
                    && !self.allows("CLUSTER", None, None) =>
            {
                let form = sub.map_or("CLUSTER".to_owned(), |s| format!("CLUSTER {s}"));
                Err(self.deny(
                    &form,
                    "changes the cluster's state; only its reads (INFO, NODES, SHARDS, SLOTS, KEYSLOT, ...) are \
                     allowed"
                        .into(),
                    Some(allow_commands_hint("CLUSTER")),
                ))
            }
            ("RESTORE", _)
                if rest.iter().skip(3).any(|a| a == "REPLACE") && !self.allows("RESTORE", Some("REPLACE"), None) =>
            {
                Err(self.deny(
                    "RESTORE … REPLACE",
                    "overwrites a key that exists with the payload's value".into(),
                    Some(allow_commands_hint("RESTORE REPLACE")),
                ))
            }
            ("WAIT", _) => {
                let timeout = rest.get(1).and_then(|t| t.parse::<i64>().ok());
                if timeout.is_some_and(|t| t > 0) || self.allows("WAIT", None, None) {
                    Ok(None)
                } else {
                    Err(self.deny(
                        "WAIT … 0",
                        "without a timeout it blocks until enough replicas acknowledge, which may be never; \
                         give a timeout in milliseconds, e.g. WAIT 1 5000"
                            .into(),
                        Some(allow_commands_hint("WAIT")),
                    ))
                }
            }
            _ => Ok(None),
        }
    }

    /// `CONFIG SET name value [name value ...]`: every name is checked.
    fn config_set(&self, pairs: &[String]) -> Result<Option<u64>, PolicyDenied> {
        let mut maxmemory: Option<u64> = None;
        for pair in pairs.chunks(2) {
            let param = pair[0].to_ascii_lowercase();
            if self.allows("CONFIG", Some("SET"), Some(&param)) {
                continue;
            }
            let form = format!("CONFIG SET {param}");
            if !config_set::allowed_by_default(&param) {
                return Err(self.deny(&form, config_set::why_denied(&param), Some(allow_commands_hint(&form))));
            }
            if param == "maxmemory" {
                let value = pair.get(1).map_or("", String::as_str);
                let bytes = config_set::parse_size(value).ok_or_else(|| {
                    self.deny(
                        &form,
                        format!(
                            "`{value}` is not a size the policy can check against the server's memory \
                             (bytes, or a number with k, kb, m, mb, g or gb)"
                        ),
                        Some(allow_commands_hint(&form)),
                    )
                })?;
                maxmemory = Some(maxmemory.map_or(bytes, |m| m.min(bytes)));
            }
        }
        Ok(maxmemory)
    }

    /// Whether a `CONFIG SET maxmemory` to `requested` bytes may go to a
    /// server with this memory (`INFO memory`): the bounds are
    /// [`config_set::maxmemory_bounds`]. Allowing `CONFIG SET maxmemory`
    /// in the config lifts them (the command then never asks).
    pub fn check_maxmemory(
        &self,
        requested: u64,
        used_memory: u64,
        total_system_memory: u64,
    ) -> Result<(), PolicyDenied> {
        let (floor, ceiling) = config_set::maxmemory_bounds(used_memory, total_system_memory);
        let range = match ceiling {
            Some(c) => format!(
                "playbooks may set it from {} to {}",
                config_set::show_bytes(floor),
                config_set::show_bytes(c)
            ),
            None => format!("playbooks may set it to {} or more", config_set::show_bytes(floor)),
        };
        let why = if requested == 0 {
            "0 removes the memory limit altogether".to_owned()
        } else if requested < floor {
            format!(
                "{} is under {MAXMEMORY_HEADROOM} × the memory in use ({}): the server would start evicting \
                 keys or refusing writes at once",
                config_set::show_bytes(requested),
                config_set::show_bytes(used_memory)
            )
        } else if let Some(c) = ceiling.filter(|c| requested > *c) {
            format!(
                "{} is more than the machine's memory ({}): the server could grow until the kernel's OOM \
                 killer ends it",
                config_set::show_bytes(requested),
                config_set::show_bytes(c)
            )
        } else {
            return Ok(());
        };
        Err(self.deny(
            "CONFIG SET maxmemory",
            format!("{why}; {range}"),
            Some(allow_commands_hint("CONFIG SET maxmemory")),
        ))
    }

    /// The denial of a bounded `CONFIG SET maxmemory` whose bounds cannot be
    /// checked because the server's memory cannot be read (`why`).
    pub fn maxmemory_unchecked(&self, why: &str) -> PolicyDenied {
        self.deny(
            "CONFIG SET maxmemory",
            format!("it is allowed only within bounds of the memory in use, and {why}"),
            Some(allow_commands_hint("CONFIG SET maxmemory")),
        )
    }

    /// Checks a command written as one line, as probes are: `LLEN celery`.
    pub fn check_line(&self, line: &str) -> Result<Vec<String>, PolicyDenied> {
        let args = split_command_line(line);
        let _ = self.check(&args)?;
        Ok(args)
    }

    /// Whether an `allow_commands` entry allows this form.
    fn allows(&self, command: &str, sub: Option<&str>, param: Option<&str>) -> bool {
        self.allowed.iter().any(|e| {
            e.command == command
                && e.sub.as_deref() == sub
                && e.param
                    .as_ref()
                    .is_none_or(|g| param.is_some_and(|p| g.matches(p.as_bytes())))
        })
    }

    fn deny(&self, command: &str, reason: String, allow_hint: Option<String>) -> PolicyDenied {
        PolicyDenied {
            command: command.to_owned(),
            policy: self.name(),
            reason,
            allow_hint: if self.mode == Mode::Default { allow_hint } else { None },
        }
    }
}

/// `"config set Slowlog-*"` → CONFIG, SET, `slowlog-*`. A renamed command
/// may be named by either name.
fn allow_entry(text: &str, renamed: &HashMap<String, String>) -> Option<AllowEntry> {
    let mut words = text.split_whitespace();
    let first = words.next()?.to_ascii_uppercase();
    let command = renamed.get(&first).cloned().unwrap_or(first);
    let sub = words.next().map(str::to_ascii_uppercase);
    // Parameter names keep Redis's own spelling, lower case.
    let param = words.next().map(|p| Glob::new(&p.to_ascii_lowercase()));
    Some(AllowEntry { command, sub, param })
}

/// What is wrong with an `allow_commands` entry, for the config's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryProblem {
    /// It cannot be made sense of: the config is refused.
    Invalid(String),
    /// It names no form the policy denies, so it allows nothing.
    AllowsNothing(String),
}

/// An entry must name a form the policy denies, by a standard command's
/// name or a declared renamed one.
pub fn allow_entry_problem(text: &str, renamed_commands: &BTreeMap<String, String>) -> Option<EntryProblem> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some(first) = words.first().map(|w| w.to_ascii_uppercase()) else {
        return Some(EntryProblem::Invalid("an empty entry".into()));
    };
    let standard = renamed_commands
        .iter()
        .find(|(_, new)| new.trim().eq_ignore_ascii_case(&first))
        .map_or(first.clone(), |(s, _)| s.trim().to_ascii_uppercase());
    if words.len() > 3 {
        return Some(EntryProblem::Invalid(format!(
            "`{text}` has more than a command, a subcommand and a parameter"
        )));
    }
    if !is_standard(&standard) {
        return Some(EntryProblem::Invalid(format!(
            "`{first}` is not a standard Redis command: a renamed command is declared in [playbooks] \
             renamed_commands (e.g. renamed_commands = {{ CONFIG = \"{first}\" }}), and is then judged by \
             the rules of the command it is"
        )));
    }
    let sub = words.get(1).map(|w| w.to_ascii_uppercase());
    let denied = match (sub.as_deref(), words.len()) {
        (None, _) => DENIED_COMMANDS.iter().any(|(c, _)| *c == standard),
        (Some(sub), 2) => DENIED_SUBCOMMANDS.iter().any(|(c, s, _)| *c == standard && *s == sub),
        _ => false,
    } || RULE_FORMS.iter().any(|(c, s)| {
        *c == standard && *s == sub.as_deref() && (words.len() < 3 || (*c, *s) == ("CONFIG", Some("SET")))
    });
    (!denied).then(|| {
        EntryProblem::AllowsNothing(format!(
            "`{text}` names no form the policy denies, so it allows nothing: an entry allows exactly the form \
             it names (e.g. \"CONFIG SET appendonly\", \"CLIENT KILL\"), never every subcommand of a command"
        ))
    })
}

/// What is wrong with a `renamed_commands` entry (standard → new name).
pub fn renamed_entry_problem(standard: &str, new: &str) -> Option<String> {
    let new = new.trim();
    if !is_standard(&standard.trim().to_ascii_uppercase()) {
        Some(format!("`{standard}` is not a standard Redis command"))
    } else if new.eq_ignore_ascii_case(standard.trim()) {
        Some(format!("`{standard}` is renamed to itself: it needs no entry"))
    } else if new.is_empty() || new.contains(char::is_whitespace) {
        Some(format!(
            "`{standard}` is renamed to `{new}`: a command disabled with rename-command \"\" needs no entry, \
             and a name has no spaces"
        ))
    } else if is_standard(&new.to_ascii_uppercase()) {
        Some(format!(
            "`{standard}` is renamed to `{new}`, the name of another standard command"
        ))
    } else {
        None
    }
}

/// Splits `LLEN "my queue"` into arguments, honouring simple quotes.
pub fn split_command_line(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_arg = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_arg = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_arg {
                    args.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_arg = true;
            }
        }
    }
    if in_arg {
        args.push(cur);
    }
    args
}

#[cfg(test)]
mod tests;
