use std::collections::BTreeMap;

use super::*;

fn policy() -> CommandPolicy {
    CommandPolicy::playbook(&[])
}

fn allowing(entries: &[&str]) -> CommandPolicy {
    CommandPolicy::playbook(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
}

fn renamed(pairs: &[(&str, &str)], allow: &[&str]) -> CommandPolicy {
    let renames: BTreeMap<String, String> = pairs.iter().map(|(s, n)| ((*s).into(), (*n).into())).collect();
    CommandPolicy::playbook_with_renames(&allow.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>(), &renames)
}

fn denied_form(p: &CommandPolicy, args: &[&str]) -> String {
    match p.check(args) {
        Ok(a) => panic!("{args:?} was allowed: {a:?}"),
        Err(d) => {
            assert!(d.to_string().contains("denied by the playbook command policy"), "{d}");
            d.command
        }
    }
}

#[test]
fn destructive_commands_are_denied_whatever_their_case() {
    for cmd in ["FLUSHALL", "flushall", "FlUsHaLl", " flushall"] {
        assert_eq!(denied_form(&policy(), &[cmd]), "FLUSHALL");
    }
    assert!(policy().check(&["KEYS", "*"]).is_err());
    assert!(policy().check(&["MEMORY", "PURGE"]).is_ok());
    assert!(policy().check(&["CONFIG", "SET", "activedefrag", "yes"]).is_ok());
}

#[test]
fn what_blocks_the_server_or_erases_evidence_is_denied() {
    let p = policy();
    assert_eq!(denied_form(&p, &["save"]), "SAVE");
    assert!(p.check(&["BGSAVE"]).is_ok());
    assert_eq!(denied_form(&p, &["BGREWRITEAOF"]), "BGREWRITEAOF");
    assert_eq!(denied_form(&p, &["REPLCONF", "listening-port", "1"]), "REPLCONF");
    assert_eq!(denied_form(&p, &["config", "rewrite"]), "CONFIG REWRITE");
    assert_eq!(denied_form(&p, &["CONFIG", "RESETSTAT"]), "CONFIG RESETSTAT");
    assert_eq!(denied_form(&p, &["CLIENT", "PAUSE", "10000"]), "CLIENT PAUSE");
    assert!(p.check(&["CLIENT", "UNPAUSE"]).is_ok());
    assert_eq!(denied_form(&p, &["SLOWLOG", "RESET"]), "SLOWLOG RESET");
    assert_eq!(denied_form(&p, &["latency", "reset"]), "LATENCY RESET");
    assert!(p.check(&["SLOWLOG", "GET", "10"]).is_ok());
}

#[test]
fn client_kill_is_allowed_for_one_client_by_id_only() {
    let p = policy();
    assert!(p.check(&["CLIENT", "KILL", "ID", "42"]).is_ok());
    assert!(p.check(&["client", "kill", "id", "42"]).is_ok());
    for form in [
        &["CLIENT", "KILL", "127.0.0.1:5000"][..],
        &["CLIENT", "KILL", "ADDR", "127.0.0.1:5000"],
        &["CLIENT", "KILL", "LADDR", "127.0.0.1:6379"],
        &["CLIENT", "KILL", "USER", "default"],
        &["CLIENT", "KILL", "TYPE", "normal"],
        &["CLIENT", "KILL", "SKIPME", "no"],
        &["CLIENT", "KILL", "MAXAGE", "1"],
        &["CLIENT", "KILL", "ID", "42", "SKIPME", "no"],
        &["CLIENT", "KILL", "ID", "all"],
        &["CLIENT", "KILL"],
    ] {
        assert_eq!(denied_form(&p, form), "CLIENT KILL", "{form:?}");
    }
    assert!(
        allowing(&["client kill"])
            .check(&["CLIENT", "KILL", "TYPE", "normal"])
            .is_ok()
    );
    // An entry allows the form it names and no other.
    assert!(
        allowing(&["CLIENT"])
            .check(&["CLIENT", "KILL", "TYPE", "normal"])
            .is_err()
    );
    assert!(allowing(&["CLIENT KILL"]).check(&["CLIENT", "PAUSE", "10"]).is_err());
}

#[test]
fn restore_replace_and_wait_without_a_timeout_are_denied() {
    let p = policy();
    assert!(p.check(&["RESTORE", "k", "0", "payload"]).is_ok());
    assert_eq!(
        denied_form(&p, &["RESTORE", "k", "0", "payload", "replace"]),
        "RESTORE … REPLACE"
    );
    // A payload that reads REPLACE is not the option.
    assert!(p.check(&["RESTORE", "k", "0", "REPLACE"]).is_ok());
    assert!(
        allowing(&["RESTORE REPLACE"])
            .check(&["RESTORE", "k", "0", "p", "REPLACE"])
            .is_ok()
    );
    assert!(p.check(&["WAIT", "1", "5000"]).is_ok());
    assert_eq!(denied_form(&p, &["WAIT", "1", "0"]), "WAIT … 0");
    assert_eq!(denied_form(&p, &["WAIT", "1"]), "WAIT … 0");
    assert_eq!(denied_form(&p, &["WAIT", "1", "-5"]), "WAIT … 0");
    assert!(allowing(&["WAIT"]).check(&["WAIT", "1", "0"]).is_ok());
}

#[test]
fn config_set_is_an_allow_list_checked_for_every_parameter() {
    let p = policy();
    for param in [
        "maxmemory-policy",
        "activedefrag",
        "active-defrag-cycle-max",
        "lazyfree-lazy-eviction",
        "hz",
    ] {
        assert!(p.check(&["CONFIG", "SET", param, "x"]).is_ok(), "{param}");
    }
    for param in [
        "min-replicas-to-write",
        "protected-mode",
        "notify-keyspace-events",
        "appendonly",
        "save",
        "requirepass",
        "dir",
        "dbfilename",
        "maxmemory-clients",
    ] {
        assert_eq!(
            denied_form(&p, &["CONFIG", "SET", param, "x"]),
            format!("CONFIG SET {param}")
        );
    }
    assert_eq!(
        denied_form(&p, &["config", "set", "hz", "10", "RequirePass", "x"]),
        "CONFIG SET requirepass"
    );
    // A value that happens to read like a parameter is not one.
    assert!(p.check(&["CONFIG", "SET", "maxmemory-policy", "requirepass"]).is_ok());
    let err = p.check(&["CONFIG", "SET", "appendonly", "no"]).unwrap_err();
    assert!(err.reason.contains("persists"), "{err}");
    assert!(
        err.to_string()
            .contains("add \"CONFIG SET appendonly\" to [playbooks] allow_commands"),
        "{err}"
    );
}

#[test]
fn the_config_can_allow_a_denied_form_narrowly_or_broadly() {
    let p = allowing(&["flushdb", "CONFIG SET requirepass", "config set client-output-buffer-*"]);
    assert!(p.check(&["FLUSHDB"]).is_ok());
    assert!(p.check(&["CONFIG", "SET", "requirepass", "x"]).is_ok());
    assert!(
        p.check(&["CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0"])
            .is_ok()
    );
    assert!(p.check(&["FLUSHALL"]).is_err());
    assert!(p.check(&["CONFIG", "SET", "appendonly", "no"]).is_err());
    assert!(p.check(&["CONFIG", "REWRITE"]).is_err());
    let broad = allowing(&["CONFIG SET"]);
    assert!(broad.check(&["CONFIG", "SET", "appendonly", "no", "save", ""]).is_ok());
    assert!(broad.check(&["CONFIG", "RESETSTAT"]).is_err());
    assert!(allowing(&["CONFIG"]).check(&["CONFIG", "SET", "save", ""]).is_err());
}

#[test]
fn maxmemory_is_allowed_within_bounds_of_the_memory_in_use() {
    let p = policy();
    let a = p.check(&["CONFIG", "SET", "maxmemory", "100mb"]).unwrap();
    assert_eq!(a.maxmemory, Some(100 * 1024 * 1024));
    assert!(!a.read_only);
    let used = 50 * 1024 * 1024;
    assert!(p.check_maxmemory(100 * 1024 * 1024, used, 0).is_ok());
    let err = p.check_maxmemory(used, used, 0).unwrap_err();
    assert!(err.reason.contains("evicting"), "{err}");
    assert!(err.reason.contains("or more"), "{err}");
    let err = p.check_maxmemory(0, used, 0).unwrap_err();
    assert!(err.reason.contains("removes the memory limit"), "{err}");
    let err = p.check_maxmemory(8 << 30, used, 4 << 30).unwrap_err();
    assert!(err.reason.contains("OOM"), "{err}");
    // Checked in a multi-parameter CONFIG SET too; the smallest value counts.
    let a = p.check(&["CONFIG", "SET", "hz", "10", "maxmemory", "1gb"]).unwrap();
    assert_eq!(a.maxmemory, Some(1 << 30));
    assert_eq!(
        denied_form(&p, &["CONFIG", "SET", "maxmemory", "a lot"]),
        "CONFIG SET maxmemory"
    );
    // Allowing it lifts the bounds: nothing is left to check.
    let free = allowing(&["CONFIG SET maxmemory"]);
    assert_eq!(
        free.check(&["CONFIG", "SET", "maxmemory", "0"]).unwrap().maxmemory,
        None
    );
}

#[test]
fn unknown_commands_are_denied_even_when_allowed_by_name() {
    assert!(policy().check(&["EVAL", "return redis.call('FLUSHALL')", "0"]).is_err());
    assert!(policy().check(&["FCALL", "f", "0"]).is_err());
    let err = policy().check(&["FLUSHALL_9f8e"]).unwrap_err();
    assert!(err.reason.contains("not a standard Redis command"), "{err}");
    assert!(err.to_string().contains("renamed_commands"), "{err}");
    // Naming it is not enough: the policy cannot tell what it is.
    assert!(allowing(&["flushall_9f8e"]).check(&["FLUSHALL_9f8e"]).is_err());
}

#[test]
fn a_renamed_command_is_judged_by_every_rule_of_the_command_it_is() {
    let p = renamed(&[("CONFIG", "cfg_9f8e"), ("FLUSHDB", "FDB_1")], &[]);
    let err = p.check(&["CFG_9F8E", "SET", "appendonly", "no"]).unwrap_err();
    assert_eq!(err.command, "CONFIG SET appendonly");
    assert!(err.reason.contains("`CFG_9F8E` is CONFIG, renamed"), "{err}");
    assert_eq!(denied_form(&p, &["cfg_9f8e", "REWRITE"]), "CONFIG REWRITE");
    assert_eq!(denied_form(&p, &["FDB_1"]), "FLUSHDB");
    let ok = p
        .check(&["cfg_9f8e", "SET", "maxmemory-policy", "allkeys-lru"])
        .unwrap();
    assert_eq!(ok.command, "CONFIG");
    assert!(p.check(&["cfg_9f8e", "GET", "maxmemory"]).unwrap().read_only);
    assert!(
        p.check(&["cfg_9f8e", "SET", "maxmemory", "1gb"])
            .unwrap()
            .maxmemory
            .is_some()
    );

    // Allowed by its standard name or its new one, narrowly as any command.
    for allow in ["CONFIG SET appendonly", "cfg_9f8e set appendonly"] {
        let p = renamed(&[("CONFIG", "CFG_9f8e")], &[allow]);
        assert!(p.check(&["CFG_9f8e", "SET", "appendonly", "no"]).is_ok(), "{allow}");
        assert!(p.check(&["CFG_9f8e", "SET", "save", ""]).is_err(), "{allow}");
        assert!(p.check(&["CFG_9f8e", "RESETSTAT"]).is_err(), "{allow}");
    }
    // Allowing it by its bare name, as configs did before renamed_commands,
    // does not skip the rules of its subcommands.
    let p = renamed(&[("CONFIG", "CFG_9f8e")], &["CFG_9f8e"]);
    assert!(p.check(&["CFG_9f8e", "SET", "save", ""]).is_err());
    assert!(p.check(&["CFG_9f8e", "SET", "requirepass", "x"]).is_err());
}

#[test]
fn config_entries_are_checked() {
    let renames = BTreeMap::from([("CONFIG".to_owned(), "CFG_9f8e".to_owned())]);
    for fine in [
        "CONFIG SET appendonly",
        "cfg_9f8e set slowlog-*",
        "config set",
        "FLUSHDB",
        "client kill",
        "CONFIG RESETSTAT",
        "RESTORE REPLACE",
        "WAIT",
    ] {
        assert_eq!(allow_entry_problem(fine, &renames), None, "{fine}");
    }
    for nothing in ["cfg_9f8e", "CONFIG", "INCR", "CLIENT KILL ID", "FLUSHDB ASYNC"] {
        assert!(
            matches!(
                allow_entry_problem(nothing, &renames),
                Some(EntryProblem::AllowsNothing(_))
            ),
            "{nothing}"
        );
    }
    for invalid in ["FLUSHALL_9f8e", "CONFIG SET a b", ""] {
        assert!(
            matches!(allow_entry_problem(invalid, &renames), Some(EntryProblem::Invalid(_))),
            "{invalid}"
        );
    }
    let Some(EntryProblem::Invalid(why)) = allow_entry_problem("FLUSHALL_9f8e", &renames) else {
        unreachable!()
    };
    assert!(why.contains("renamed_commands"), "{why}");
    assert_eq!(renamed_entry_problem("config", "CFG_9f8e"), None);
    assert!(renamed_entry_problem("NOPE", "x").is_some());
    assert!(renamed_entry_problem("CONFIG", "GET").is_some());
    assert!(renamed_entry_problem("CONFIG", "").is_some());
}

#[test]
fn reads_are_told_from_writes() {
    let p = policy();
    assert!(p.check(&["info", "memory"]).unwrap().read_only);
    assert!(p.check(&["CONFIG", "GET", "maxmemory"]).unwrap().read_only);
    assert!(!p.check(&["CONFIG", "SET", "activedefrag", "yes"]).unwrap().read_only);
    assert!(!p.check(&["MEMORY", "PURGE"]).unwrap().read_only);
    assert!(!p.check(&["EXPIRE", "k", "10"]).unwrap().read_only);
}

#[test]
fn probes_may_only_read() {
    let p = CommandPolicy::read_only();
    assert_eq!(p.check_line("LLEN celery").unwrap(), vec!["LLEN", "celery"]);
    assert_eq!(p.check_line("llen 'my queue'").unwrap(), vec!["llen", "my queue"]);
    assert!(p.check_line("DEL celery").is_err());
    assert!(p.check_line("").is_err());
    let err = p.check_line("DEL celery").unwrap_err();
    assert!(err.allow_hint.is_none(), "the config cannot allow a probe: {err}");
}

#[test]
fn cluster_topology_changes_are_denied_and_its_reads_allowed() {
    let p = policy();
    for sub in [
        "FAILOVER",
        "reset",
        "FORGET",
        "ADDSLOTS",
        "ADDSLOTSRANGE",
        "DELSLOTS",
        "DELSLOTSRANGE",
        "SETSLOT",
        "MEET",
        "FLUSHSLOTS",
        "REPLICATE",
    ] {
        let form = denied_form(&p, &["cluster", sub, "x"]);
        assert_eq!(form, format!("CLUSTER {}", sub.to_ascii_uppercase()));
        let hint = p.check(&["CLUSTER", sub]).unwrap_err().allow_hint.unwrap();
        assert!(hint.contains(&format!("\"{form}\"")), "{hint}");
    }
    for sub in [
        "INFO",
        "NODES",
        "SHARDS",
        "SLOTS",
        "KEYSLOT",
        "MYID",
        "LINKS",
        "COUNTKEYSINSLOT",
        "GETKEYSINSLOT",
    ] {
        let allowed = p.check(&["CLUSTER", sub, "k"]).unwrap();
        assert!(allowed.read_only, "CLUSTER {sub} should be a read");
    }
    // Neither a read nor named: denied as a change of cluster state.
    assert_eq!(denied_form(&p, &["CLUSTER", "BUMPEPOCH"]), "CLUSTER BUMPEPOCH");
    assert_eq!(denied_form(&p, &["CLUSTER"]), "CLUSTER");
    // An entry allows the one form it names.
    let failover = allowing(&["CLUSTER FAILOVER"]);
    assert!(failover.check(&["CLUSTER", "FAILOVER"]).is_ok());
    assert!(failover.check(&["CLUSTER", "RESET", "HARD"]).is_err());
    assert!(failover.check(&["CLUSTER", "BUMPEPOCH"]).is_err());
    let other = allowing(&["CLUSTER"]);
    assert!(other.check(&["CLUSTER", "BUMPEPOCH"]).is_ok());
    assert!(other.check(&["CLUSTER", "FORGET", "abc"]).is_err());
    assert_eq!(allow_entry_problem("CLUSTER MEET", &BTreeMap::new()), None);
    assert_eq!(allow_entry_problem("CLUSTER", &BTreeMap::new()), None);
    assert!(allow_entry_problem("CLUSTER NODES", &BTreeMap::new()).is_some());
}
