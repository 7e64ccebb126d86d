//! Which Redis commands a playbook (or a probe) may send.
//!
//! The default policy denies destructive commands, commands that run other
//! commands out of sight (EVAL, FCALL, MODULE) and any name that is not a
//! standard Redis command — which is how a renamed destructive command would
//! look. The config can allow a denied command by name.

use std::collections::HashSet;
use std::fmt;

/// Denied unless allowed. An entry with a parameter (`CONFIG SET requirepass`)
/// matches that subcommand with that parameter anywhere in its arguments.
const DENIED_BY_DEFAULT: &[(&str, &str)] = &[
    ("FLUSHALL", "deletes every key in every database"),
    ("FLUSHDB", "deletes every key in the database"),
    ("SHUTDOWN", "stops the server"),
    ("DEBUG", "can crash or stall the server"),
    ("KEYS", "blocks the server while it walks every key; use SCAN"),
    ("CONFIG SET requirepass", "changes the server's password"),
    ("CONFIG SET masterauth", "changes the replication password"),
    ("CONFIG SET dir", "can make the server write files anywhere"),
    ("CONFIG SET dbfilename", "can make the server write files anywhere"),
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
    ("MIGRATE", "moves keys to another server"),
    ("SWAPDB", "swaps whole databases"),
    ("MONITOR", "streams every command; it never returns"),
    ("SYNC", "streams replication data; it never returns"),
    ("PSYNC", "streams replication data; it never returns"),
    ("SUBSCRIBE", "never returns"),
    ("PSUBSCRIBE", "never returns"),
    ("SSUBSCRIBE", "never returns"),
    ("CLUSTER", "changes the cluster topology"),
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

/// Every standard command of Redis 7 (top-level names).
const KNOWN_COMMANDS: &str = "ACL APPEND ASKING AUTH BGREWRITEAOF BGSAVE BITCOUNT BITFIELD BITFIELD_RO BITOP BITPOS \
BLMOVE BLMPOP BLPOP BRPOP BRPOPLPUSH BZMPOP BZPOPMAX BZPOPMIN CLIENT CLUSTER COMMAND CONFIG COPY DBSIZE DEBUG DECR \
DECRBY DEL DISCARD DUMP ECHO EVAL EVAL_RO EVALSHA EVALSHA_RO EXEC EXISTS EXPIRE EXPIREAT EXPIRETIME FAILOVER FCALL \
FCALL_RO FLUSHALL FLUSHDB FUNCTION GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUS_RO GEORADIUSBYMEMBER \
GEORADIUSBYMEMBER_RO GEOSEARCH GEOSEARCHSTORE GET GETBIT GETDEL GETEX GETRANGE GETSET HDEL HELLO HEXISTS HGET \
HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET HRANDFIELD HSCAN HSET HSETNX HSTRLEN HVALS INCR INCRBY \
INCRBYFLOAT INFO KEYS LASTSAVE LATENCY LCS LINDEX LINSERT LLEN LMOVE LMPOP LOLWUT LPOP LPOS LPUSH LPUSHX LRANGE LREM \
LSET LTRIM MEMORY MGET MIGRATE MODULE MONITOR MOVE MSET MSETNX MULTI OBJECT PERSIST PEXPIRE PEXPIREAT PEXPIRETIME \
PFADD PFCOUNT PFDEBUG PFMERGE PFSELFTEST PING PSETEX PSUBSCRIBE PSYNC PTTL PUBLISH PUBSUB PUNSUBSCRIBE QUIT \
RANDOMKEY READONLY READWRITE RENAME RENAMENX REPLCONF REPLICAOF RESET RESTORE RESTORE-ASKING ROLE RPOP RPOPLPUSH \
RPUSH RPUSHX SADD SAVE SCAN SCARD SCRIPT SDIFF SDIFFSTORE SELECT SET SETBIT SETEX SETNX SETRANGE SHUTDOWN SINTER \
SINTERCARD SINTERSTORE SISMEMBER SLAVEOF SLOWLOG SMEMBERS SMISMEMBER SMOVE SORT SORT_RO SPOP SPUBLISH SRANDMEMBER \
SREM SSCAN SSUBSCRIBE STRLEN SUBSCRIBE SUBSTR SUNION SUNIONSTORE SUNSUBSCRIBE SWAPDB SYNC TIME TOUCH TTL TYPE UNLINK \
UNSUBSCRIBE UNWATCH WAIT WATCH XACK XADD XAUTOCLAIM XCLAIM XDEL XGROUP XINFO XLEN XPENDING XRANGE XREAD XREADGROUP \
XREVRANGE XSETID XTRIM ZADD ZCARD ZCOUNT ZDIFF ZDIFFSTORE ZINCRBY ZINTER ZINTERCARD ZINTERSTORE ZLEXCOUNT ZMPOP \
ZMSCORE ZPOPMAX ZPOPMIN ZRANDMEMBER ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ZRANGESTORE ZRANK ZREM ZREMRANGEBYLEX \
ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCAN ZSCORE ZUNION ZUNIONSTORE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    ReadOnly,
}

#[derive(Debug, Clone)]
pub struct CommandPolicy {
    mode: Mode,
    /// Upper-cased entries of `[playbooks] allow_commands`.
    allowed: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyDenied {
    pub command: String,
    pub policy: &'static str,
    pub reason: String,
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
            write!(f, " (to allow it, add {hint} to [playbooks] allow_commands)")?;
        }
        Ok(())
    }
}

impl CommandPolicy {
    /// The playbook policy: destructive commands denied unless `allow` names them.
    pub fn playbook(allow: &[String]) -> Self {
        CommandPolicy {
            mode: Mode::Default,
            allowed: allow.iter().map(|a| normalise(a)).collect(),
        }
    }

    /// The probe policy: a short list of read-only commands and nothing else.
    pub fn read_only() -> Self {
        CommandPolicy {
            mode: Mode::ReadOnly,
            allowed: HashSet::new(),
        }
    }

    fn name(&self) -> &'static str {
        match self.mode {
            Mode::Default => "playbook",
            Mode::ReadOnly => "read-only probe",
        }
    }

    /// Checks a command given as its arguments, e.g. `["MEMORY", "PURGE"]`.
    pub fn check<S: AsRef<str>>(&self, args: &[S]) -> Result<(), PolicyDenied> {
        let Some(first) = args.first() else {
            return Err(self.deny("", "an empty command".into(), None));
        };
        // Case tricks ("fLuShAlL") and stray whitespace must not get past the policy.
        let command = first.as_ref().trim().to_ascii_uppercase();
        let rest: Vec<String> = args[1..].iter().map(|a| a.as_ref().to_ascii_uppercase()).collect();
        if self.mode == Mode::ReadOnly {
            return if READ_ONLY.contains(&command.as_str()) {
                Ok(())
            } else {
                Err(self.deny(
                    &command,
                    format!("only these commands may be probes: {}", READ_ONLY.join(", ")),
                    None,
                ))
            };
        }
        // An operator who renamed a command may allow it under its new name.
        if !KNOWN_COMMANDS.split_ascii_whitespace().any(|k| k == command) && !self.allowed.contains(&command) {
            return Err(self.deny(
                &command,
                "it is not a standard Redis command (a renamed command cannot be used to get around the policy)".into(),
                Some(format!("\"{command}\"")),
            ));
        }
        for (entry, reason) in DENIED_BY_DEFAULT {
            if matches_entry(entry, &command, &rest) && !self.allowed.contains(*entry) {
                let shown = entry.to_string();
                return Err(self.deny(&shown, (*reason).into(), Some(format!("\"{entry}\""))));
            }
        }
        Ok(())
    }

    /// Checks a command written as one line, as probes are: `LLEN celery`.
    pub fn check_line(&self, line: &str) -> Result<Vec<String>, PolicyDenied> {
        let args = split_command_line(line);
        self.check(&args)?;
        Ok(args)
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

fn normalise(entry: &str) -> String {
    let mut words = entry.split_whitespace();
    let mut out: Vec<String> = Vec::new();
    if let Some(c) = words.next() {
        out.push(c.to_ascii_uppercase());
    }
    if let Some(s) = words.next() {
        out.push(s.to_ascii_uppercase());
    }
    // The parameter of `CONFIG SET param` keeps the spelling of the deny list.
    out.extend(words.map(|w| w.to_ascii_lowercase()));
    out.join(" ")
}

fn matches_entry(entry: &str, command: &str, rest: &[String]) -> bool {
    let mut words = entry.split(' ');
    if words.next() != Some(command) {
        return false;
    }
    match (words.next(), words.next()) {
        (None, _) => true,
        (Some(sub), None) => rest.first().is_some_and(|r| r == sub),
        (Some(sub), Some(param)) => {
            rest.first().is_some_and(|r| r == sub)
                // CONFIG SET takes name/value pairs: check every name.
                && rest[1..].iter().step_by(2).any(|p| p.eq_ignore_ascii_case(param))
        }
    }
}

/// Commands that only read: a dry run still sends these, since a playbook
/// decides what to do from their answers.
const READS: &[&str] = &[
    "INFO",
    "PING",
    "ROLE",
    "TIME",
    "DBSIZE",
    "SCAN",
    "SSCAN",
    "HSCAN",
    "ZSCAN",
    "TTL",
    "PTTL",
    "TYPE",
    "EXISTS",
    "GET",
    "MGET",
    "STRLEN",
    "LLEN",
    "LRANGE",
    "LINDEX",
    "SCARD",
    "SMEMBERS",
    "SISMEMBER",
    "HLEN",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HMGET",
    "HEXISTS",
    "ZCARD",
    "ZSCORE",
    "ZRANGE",
    "ZCOUNT",
    "ZRANK",
    "XLEN",
    "XINFO",
    "XRANGE",
    "XREVRANGE",
    "PFCOUNT",
    "OBJECT",
    "DUMP",
    "LASTSAVE",
    "RANDOMKEY",
    "ECHO",
    "EXPIRETIME",
    "PEXPIRETIME",
    "GETRANGE",
    "BITCOUNT",
];

/// Subcommands that only read, for commands that also have writing ones.
const READ_SUBCOMMANDS: &[(&str, &[&str])] = &[
    ("CONFIG", &["GET"]),
    ("MEMORY", &["USAGE", "STATS", "DOCTOR", "MALLOC-STATS"]),
    ("SLOWLOG", &["GET", "LEN"]),
    ("LATENCY", &["LATEST", "HISTORY", "DOCTOR", "HISTOGRAM"]),
    ("CLIENT", &["LIST", "INFO", "GETNAME", "ID"]),
    ("COMMAND", &["INFO", "COUNT", "DOCS", "LIST", "GETKEYS"]),
];

pub fn is_read_only<S: AsRef<str>>(args: &[S]) -> bool {
    let Some(command) = args.first().map(|c| c.as_ref().trim().to_ascii_uppercase()) else {
        return false;
    };
    if READS.contains(&command.as_str()) {
        return true;
    }
    let sub = args.get(1).map(|s| s.as_ref().to_ascii_uppercase());
    READ_SUBCOMMANDS
        .iter()
        .any(|(c, subs)| *c == command && sub.as_deref().is_some_and(|s| subs.contains(&s)))
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
mod tests {
    use super::*;

    fn policy() -> CommandPolicy {
        CommandPolicy::playbook(&[])
    }

    #[test]
    fn destructive_commands_are_denied_whatever_their_case() {
        for cmd in ["FLUSHALL", "flushall", "FlUsHaLl", " flushall"] {
            let err = policy().check(&[cmd]).unwrap_err();
            assert_eq!(err.command, "FLUSHALL");
            assert!(err.to_string().contains("playbook command policy"), "{err}");
        }
        assert!(policy().check(&["KEYS", "*"]).is_err());
        assert!(policy().check(&["MEMORY", "PURGE"]).is_ok());
        assert!(policy().check(&["CONFIG", "SET", "activedefrag", "yes"]).is_ok());
    }

    #[test]
    fn config_set_of_a_protected_parameter_is_denied_in_any_position() {
        let err = policy()
            .check(&["config", "set", "maxmemory", "1gb", "RequirePass", "x"])
            .unwrap_err();
        assert_eq!(err.command, "CONFIG SET requirepass");
        // A value that happens to read "requirepass" is not a parameter name.
        assert!(
            policy()
                .check(&["CONFIG", "SET", "maxmemory-policy", "requirepass"])
                .is_ok()
        );
    }

    #[test]
    fn wrapping_and_renamed_commands_are_denied() {
        assert!(policy().check(&["EVAL", "return redis.call('FLUSHALL')", "0"]).is_err());
        assert!(policy().check(&["FCALL", "f", "0"]).is_err());
        let err = policy().check(&["FLUSHALL_9f8e"]).unwrap_err();
        assert!(err.reason.contains("not a standard Redis command"), "{err}");
        assert!(
            CommandPolicy::playbook(&["flushall_9f8e".into()])
                .check(&["FLUSHALL_9f8e"])
                .is_ok()
        );
    }

    #[test]
    fn the_config_can_allow_a_denied_command() {
        let p = CommandPolicy::playbook(&["flushdb".into(), "CONFIG SET requirepass".into()]);
        assert!(p.check(&["FLUSHDB"]).is_ok());
        assert!(p.check(&["CONFIG", "SET", "requirepass", "x"]).is_ok());
        assert!(p.check(&["FLUSHALL"]).is_err());
    }

    #[test]
    fn reads_are_told_from_writes() {
        assert!(is_read_only(&["info", "memory"]));
        assert!(is_read_only(&["CONFIG", "GET", "maxmemory"]));
        assert!(!is_read_only(&["CONFIG", "SET", "activedefrag", "yes"]));
        assert!(!is_read_only(&["MEMORY", "PURGE"]));
        assert!(!is_read_only(&["EXPIRE", "k", "10"]));
    }

    #[test]
    fn probes_may_only_read() {
        let p = CommandPolicy::read_only();
        assert_eq!(p.check_line("LLEN celery").unwrap(), vec!["LLEN", "celery"]);
        assert_eq!(p.check_line("llen 'my queue'").unwrap(), vec!["llen", "my queue"]);
        assert!(p.check_line("DEL celery").is_err());
        assert!(p.check_line("").is_err());
    }
}
