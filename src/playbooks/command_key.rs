//! Which argument of a command is its first key: what a command sent to a
//! cluster is routed by. Redis's own command table, in the part playbooks
//! use; a command not named here takes its key as its first argument.

/// Commands that name no key: they go to a node the playbook names.
const KEYLESS: &[&str] = &[
    "ACL",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "DBSIZE",
    "DEBUG",
    "DISCARD",
    "ECHO",
    "EXEC",
    "FAILOVER",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "HELLO",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LATENCY",
    "LOLWUT",
    "MEMORY",
    "MODULE",
    "MONITOR",
    "MULTI",
    "OBJECT",
    "PFSELFTEST",
    "PING",
    "PSUBSCRIBE",
    "PSYNC",
    "PUBLISH",
    "PUBSUB",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "REPLCONF",
    "REPLICAOF",
    "RESET",
    "ROLE",
    "SAVE",
    "SCAN",
    "SCRIPT",
    "SELECT",
    "SHUTDOWN",
    "SLAVEOF",
    "SLOWLOG",
    "SUBSCRIBE",
    "SWAPDB",
    "SYNC",
    "TIME",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "XINFO",
    "XGROUP",
];

/// Container commands whose subcommand is followed by a key.
const KEY_AFTER_SUBCOMMAND: &[(&str, &[&str])] = &[
    ("MEMORY", &["USAGE"]),
    ("OBJECT", &["ENCODING", "FREQ", "IDLETIME", "REFCOUNT"]),
    ("XINFO", &["STREAM", "GROUPS", "CONSUMERS"]),
    (
        "XGROUP",
        &["CREATE", "CREATECONSUMER", "DELCONSUMER", "DESTROY", "SETID"],
    ),
];

/// `numkeys` then the keys, at this index.
const NUMKEYS_AT: &[(&str, usize)] = &[
    ("EVAL", 2),
    ("EVALSHA", 2),
    ("EVAL_RO", 2),
    ("EVALSHA_RO", 2),
    ("FCALL", 2),
    ("FCALL_RO", 2),
    ("LMPOP", 1),
    ("ZMPOP", 1),
    ("SINTERCARD", 1),
    ("ZINTER", 1),
    ("ZINTERCARD", 1),
    ("ZUNION", 1),
    ("ZDIFF", 1),
    ("BLMPOP", 2),
    ("BZMPOP", 2),
];

/// The first key of `args` (a command and its arguments), or `None` for a
/// command without one.
pub fn first_key(args: &[String]) -> Option<&str> {
    let command = args.first()?.trim().to_ascii_uppercase();
    let arg = |i: usize| args.get(i).map(String::as_str);
    if let Some((_, subs)) = KEY_AFTER_SUBCOMMAND.iter().find(|(c, _)| *c == command) {
        let sub = arg(1)?.to_ascii_uppercase();
        return if subs.contains(&sub.as_str()) { arg(2) } else { None };
    }
    if KEYLESS.contains(&command.as_str()) {
        return None;
    }
    if let Some((_, at)) = NUMKEYS_AT.iter().find(|(c, _)| *c == command) {
        let numkeys: usize = arg(*at)?.trim().parse().ok()?;
        return if numkeys > 0 { arg(at + 1) } else { None };
    }
    match command.as_str() {
        // BITOP AND dest src...
        "BITOP" => arg(2),
        "XREAD" | "XREADGROUP" => {
            let streams = args.iter().position(|a| a.eq_ignore_ascii_case("STREAMS"))?;
            arg(streams + 1)
        }
        // MIGRATE host port key|"" db timeout ... [KEYS k...]
        "MIGRATE" => match arg(3) {
            Some("") => {
                let keys = args.iter().position(|a| a.eq_ignore_ascii_case("KEYS"))?;
                arg(keys + 1)
            }
            other => other,
        },
        _ => arg(1),
    }
}

#[cfg(test)]
mod tests {
    use super::first_key;

    fn key(args: &[&str]) -> Option<String> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        first_key(&args).map(str::to_owned)
    }

    #[test]
    fn the_first_key_is_found_where_the_command_puts_it() {
        assert_eq!(key(&["SET", "a", "1"]).as_deref(), Some("a"));
        assert_eq!(key(&["get", "b"]).as_deref(), Some("b"));
        assert_eq!(key(&["MEMORY", "USAGE", "c"]).as_deref(), Some("c"));
        assert_eq!(key(&["object", "encoding", "d"]).as_deref(), Some("d"));
        assert_eq!(key(&["EVAL", "return 1", "1", "e"]).as_deref(), Some("e"));
        assert_eq!(key(&["BITOP", "AND", "f", "g"]).as_deref(), Some("f"));
        assert_eq!(key(&["XREAD", "COUNT", "2", "STREAMS", "h", "0"]).as_deref(), Some("h"));
        assert_eq!(key(&["LMPOP", "2", "i", "j", "LEFT"]).as_deref(), Some("i"));
    }

    #[test]
    fn keyless_commands_have_none() {
        for args in [
            &["INFO", "memory"][..],
            &["PING"],
            &["DBSIZE"],
            &["CONFIG", "GET", "maxmemory"],
            &["CLUSTER", "INFO"],
            &["SCAN", "0"],
            &["MEMORY", "STATS"],
            &["EVAL", "return 1", "0"],
            &["SET"],
        ] {
            assert_eq!(key(args), None, "{args:?}");
        }
    }
}
