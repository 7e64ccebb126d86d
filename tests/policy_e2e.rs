//! The playbook command policy against a real Redis, one playbook per
//! attempt, run with `redops playbook run`: each denied attempt fails naming
//! the policy and what to set to allow it, and the server is as it was;
//! each allowed form still works. Also the side-effect guards of `exec`
//! (environment, process group), `http` (host list, dry run, redirects) and
//! `backup.restore` (pre-restore backup).

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{TestRedis, WebhookReceiver, engine_dir, run_redops, wait_until};

const POLICY: &str = "denied by the playbook command policy";

const ATTEMPTS: &[(&str, &str)] = &[
    ("lower_case", r#"redis.cmd(["flushall"]);"#),
    ("mixed_case", r#"redis.cmd(["FlUsHdB"]);"#),
    ("padded", r#"redis.cmd([" FLUSHALL"]);"#),
    ("renamed", r#"redis.cmd(["FLUSHALL_9f8e"]);"#),
    (
        "multi_exec",
        r#"redis.cmd(["MULTI"]); redis.cmd(["FLUSHALL"]); redis.cmd(["EXEC"]);"#,
    ),
    ("eval", r#"redis.cmd(["EVAL", "return redis.call('FLUSHALL')", "0"]);"#),
    (
        "eval_ro",
        r#"redis.cmd(["EVAL_RO", "return redis.call('GET', 'k')", "0"]);"#,
    ),
    ("fcall", r#"redis.cmd(["FCALL", "wipe", "0"]);"#),
    (
        "requirepass_among_others",
        r#"redis.cmd(["CONFIG", "SET", "maxmemory", "0", "RequirePass", "owned"]);"#,
    ),
    ("keys", r#"redis.cmd(["KEYS", "*"]);"#),
    ("shutdown", r#"redis.cmd(["SHUTDOWN", "NOSAVE"]);"#),
];

/// What one `redops playbook run` did.
struct Run {
    ok: bool,
    /// stdout and stderr.
    text: String,
    stdout: String,
    took: Duration,
}

fn run_in(dir: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let config = dir.join("redops.toml");
    let mut args = vec![
        "playbook",
        "run",
        name,
        "--target",
        "cache",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = run_redops(&args, env);
    Run {
        ok: out.status.success(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        took: started.elapsed(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Replaces the config of an `engine_dir` with `config` (after `[engine]`).
fn set_config(dir: &Path, config: &str) {
    let engine = "[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\n\n";
    std::fs::write(dir.join("redops.toml"), format!("{engine}{config}")).unwrap();
}

fn target(redis: &TestRedis) -> String {
    format!("[[target]]\nname = \"cache\"\nurl = \"{}\"\n", redis.url(0))
}

/// The run failed with the policy's denial of `form`, saying how to allow it.
fn assert_denied(run: &Run, name: &str, form: &str) {
    assert!(!run.ok, "{name} ran:\n{}", run.text);
    assert!(
        run.text.contains(POLICY),
        "{name} failed, but not by the policy:\n{}",
        run.text
    );
    assert!(
        run.text.contains(form),
        "{name}: the denial does not name `{form}`:\n{}",
        run.text
    );
    assert!(
        run.text.contains("to allow it"),
        "{name}: no hint of how to allow it:\n{}",
        run.text
    );
}

fn assert_ran(run: &Run, name: &str) {
    assert!(run.ok, "{name} failed:\n{}", run.text);
}

fn info_field(redis: &TestRedis, section: &str, field: &str) -> String {
    let info = redis.cli(&["INFO", section]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {field}:\n{info}"))
        .trim()
        .to_owned()
}

fn config_get(redis: &TestRedis, param: &str) -> String {
    redis
        .cli(&["CONFIG", "GET", param])
        .lines()
        .nth(1)
        .unwrap_or("")
        .to_owned()
}

#[test]
fn no_wrapping_or_spelling_gets_a_denied_command_past_the_policy() {
    let redis = TestRedis::start(&[]);
    for n in 0..10 {
        redis.cli(&["SET", &format!("keep:{n}"), "x"]);
    }
    let dir = engine_dir("1s", &target(&redis), &[], ATTEMPTS);
    for (name, _) in ATTEMPTS {
        let run = run_in(dir.path(), name, &[], &[]);
        assert!(!run.ok, "{name} ran:\n{}", run.text);
        assert!(run.text.contains(POLICY), "{name}:\n{}", run.text);
        assert_eq!(redis.cli(&["DBSIZE"]).trim(), "10", "{name} changed the data");
    }
    assert_eq!(config_get(&redis, "requirepass"), "");
    assert_eq!(redis.cli(&["PING"]).trim(), "PONG");
}

#[test]
fn client_kill_drops_one_client_by_id_and_nothing_else() {
    let redis = TestRedis::start(&[]);
    let mut victim = redis.conn();
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("victim")
        .query::<()>(&mut victim)
        .unwrap();
    let find = r#"let v = redis.client_list().filter(|c| c.name == "victim")[0];"#;
    let attempts = [
        (
            "every_normal_client",
            r#"redis.cmd(["CLIENT", "KILL", "TYPE", "normal"]);"#.to_owned(),
        ),
        (
            "by_user",
            r#"redis.cmd(["CLIENT", "KILL", "USER", "default"]);"#.to_owned(),
        ),
        (
            "by_addr",
            format!(r#"{find} redis.cmd(["CLIENT", "KILL", "ADDR", v.addr]);"#),
        ),
        ("old_style", format!(r#"{find} redis.cmd(["CLIENT", "KILL", v.addr]);"#)),
        (
            "id_and_more",
            format!(r#"{find} redis.cmd(["CLIENT", "KILL", "ID", v.id, "SKIPME", "no"]);"#),
        ),
        ("by_id", format!(r#"{find} redis.cmd(["CLIENT", "KILL", "ID", v.id]);"#)),
    ];
    let playbooks: Vec<(&str, &str)> = attempts.iter().map(|(n, s)| (*n, s.as_str())).collect();
    let dir = engine_dir("1s", &target(&redis), &[], &playbooks);
    for (name, _) in &attempts[..5] {
        let run = run_in(dir.path(), name, &[], &[]);
        assert_denied(&run, name, "CLIENT KILL");
        let pong: String = redis::cmd("PING")
            .query(&mut victim)
            .unwrap_or_else(|e| panic!("{name} dropped the victim's connection: {e}"));
        assert_eq!(pong, "PONG");
    }
    let run = run_in(dir.path(), "by_id", &[], &[]);
    assert_ran(&run, "by_id");
    assert!(
        redis::cmd("PING").query::<String>(&mut victim).is_err(),
        "CLIENT KILL ID left the victim connected"
    );
}

#[test]
fn save_rewrite_resetstat_and_bgrewriteaof_are_denied_and_change_nothing() {
    let redis = TestRedis::start(&[]);
    for n in 0..10 {
        redis.cli(&["SET", &format!("keep:{n}"), "x"]);
    }
    redis.cli(&["GET", "keep:0"]);
    let dir = engine_dir(
        "1s",
        &target(&redis),
        &[],
        &[
            ("save", r#"redis.cmd(["SAVE"]);"#),
            // hz is settable; the rewrite that would persist it is not.
            (
                "rewrite",
                r#"redis.cmd(["CONFIG", "SET", "hz", "17"]); redis.cmd(["CONFIG", "REWRITE"]);"#,
            ),
            ("resetstat", r#"redis.cmd(["config", "resetstat"]);"#),
            ("bgrewriteaof", r#"redis.cmd(["BGREWRITEAOF"]);"#),
            ("bgsave", r#"redis.cmd(["BGSAVE"]);"#),
        ],
    );
    let changes = info_field(&redis, "persistence", "rdb_changes_since_last_save");
    assert_ne!(changes, "0");
    assert_denied(&run_in(dir.path(), "save", &[], &[]), "save", "`SAVE`");
    assert_eq!(
        info_field(&redis, "persistence", "rdb_changes_since_last_save"),
        changes,
        "SAVE ran"
    );

    let conf_path = redis.process.config_path();
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    assert_denied(&run_in(dir.path(), "rewrite", &[], &[]), "rewrite", "`CONFIG REWRITE`");
    assert_eq!(config_get(&redis, "hz"), "17", "the allowed CONFIG SET before it ran");
    assert_eq!(
        std::fs::read_to_string(&conf_path).unwrap(),
        conf,
        "redis.conf was rewritten"
    );

    let hits: u64 = info_field(&redis, "stats", "keyspace_hits").parse().unwrap();
    assert!(hits > 0);
    assert_denied(
        &run_in(dir.path(), "resetstat", &[], &[]),
        "resetstat",
        "`CONFIG RESETSTAT`",
    );
    let after: u64 = info_field(&redis, "stats", "keyspace_hits").parse().unwrap();
    assert!(after >= hits, "the stats were reset: keyspace_hits {hits} → {after}");

    assert_eq!(info_field(&redis, "persistence", "aof_last_rewrite_time_sec"), "-1");
    assert_denied(
        &run_in(dir.path(), "bgrewriteaof", &[], &[]),
        "bgrewriteaof",
        "`BGREWRITEAOF`",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(info_field(&redis, "persistence", "aof_rewrite_in_progress"), "0");
    assert_eq!(
        info_field(&redis, "persistence", "aof_last_rewrite_time_sec"),
        "-1",
        "an AOF rewrite ran"
    );

    // BGSAVE, the safe form of SAVE, still runs.
    assert_ran(&run_in(dir.path(), "bgsave", &[], &[]), "bgsave");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            info_field(&redis, "persistence", "rdb_changes_since_last_save") == "0"
        }),
        "BGSAVE did not save"
    );
}

#[test]
fn pause_restore_replace_resets_replconf_and_endless_wait_are_denied() {
    let redis = TestRedis::start(&[
        ("slowlog-log-slower-than", "0"),
        ("latency-monitor-threshold", "1"),
        ("enable-debug-command", "yes"),
    ]);
    redis.cli(&["SET", "keep", "original"]);
    redis.cli(&["SET", "other", "other value"]);
    redis.cli(&["DEBUG", "SLEEP", "0.05"]);
    let dir = engine_dir(
        "1s",
        &target(&redis),
        &[],
        &[
            ("pause", r#"redis.cmd(["CLIENT", "PAUSE", "5000", "WRITE"]);"#),
            (
                "restore_replace",
                r#"let payload = redis.cmd(["DUMP", "other"]);
                   redis.cmd(["RESTORE", "keep", "0", payload, "REPLACE"]);"#,
            ),
            ("slowlog_reset", r#"redis.cmd(["SLOWLOG", "RESET"]);"#),
            ("latency_reset", r#"redis.cmd(["LATENCY", "RESET"]);"#),
            ("replconf", r#"redis.cmd(["REPLCONF", "listening-port", "9999"]);"#),
            ("wait_forever", r#"redis.cmd(["WAIT", "1", "0"]);"#),
            ("wait_100ms", r#"redis.cmd(["WAIT", "1", "100"])"#),
        ],
    );
    assert_denied(&run_in(dir.path(), "pause", &[], &[]), "pause", "`CLIENT PAUSE`");
    let started = Instant::now();
    redis.cli(&["SET", "written", "at once"]);
    assert!(started.elapsed() < Duration::from_secs(1), "writes were paused");

    assert_denied(
        &run_in(dir.path(), "restore_replace", &[], &[]),
        "restore_replace",
        "RESTORE … REPLACE",
    );
    assert_eq!(redis.cli(&["GET", "keep"]), "original");

    let slowlog: u64 = redis.cli(&["SLOWLOG", "LEN"]).trim().parse().unwrap();
    assert!(slowlog > 0);
    assert_denied(
        &run_in(dir.path(), "slowlog_reset", &[], &[]),
        "slowlog_reset",
        "`SLOWLOG RESET`",
    );
    let after: u64 = redis.cli(&["SLOWLOG", "LEN"]).trim().parse().unwrap();
    assert!(after >= slowlog, "the slow log was reset: {slowlog} → {after}");

    assert!(!redis.cli(&["LATENCY", "LATEST"]).trim().is_empty());
    assert_denied(
        &run_in(dir.path(), "latency_reset", &[], &[]),
        "latency_reset",
        "`LATENCY RESET`",
    );
    assert!(
        !redis.cli(&["LATENCY", "LATEST"]).trim().is_empty(),
        "the latency history was reset"
    );

    assert_denied(&run_in(dir.path(), "replconf", &[], &[]), "replconf", "`REPLCONF`");
    assert_eq!(info_field(&redis, "replication", "connected_slaves"), "0");

    // With no replica, WAIT 1 0 would block until the command timeout; the
    // policy refuses it before it is sent.
    let run = run_in(dir.path(), "wait_forever", &[], &[]);
    assert_denied(&run, "wait_forever", "WAIT … 0");
    assert!(!run.text.contains("timed out"), "WAIT 1 0 was sent:\n{}", run.text);
    let run = run_in(dir.path(), "wait_100ms", &[], &[]);
    assert_ran(&run, "wait_100ms");
}

#[test]
fn config_set_outside_the_allow_list_is_denied_and_every_parameter_is_checked() {
    let redis = TestRedis::start(&[
        ("notify-keyspace-events", "Exe"),
        ("save", "3600 1"),
        ("maxmemory-policy", "noeviction"),
    ]);
    let attempts: &[(&str, &str, &str)] = &[
        ("min_replicas", "min-replicas-to-write", "1"),
        ("protected_mode", "protected-mode", "no"),
        ("blind_redops", "notify-keyspace-events", ""),
        ("appendonly", "appendonly", "yes"),
        ("save", "save", ""),
        ("requirepass", "requirepass", "owned"),
        ("dir", "dir", "/tmp"),
    ];
    let scripts: Vec<(String, String)> = attempts
        .iter()
        .map(|(name, param, value)| {
            (
                (*name).to_owned(),
                format!(r#"redis.cmd(["CONFIG", "SET", "{param}", "{value}"]);"#),
            )
        })
        .chain([
            // Hidden behind an allowed parameter: the whole command is refused.
            (
                "among_others".to_owned(),
                r#"redis.cmd(["CONFIG", "SET", "hz", "20", "appendonly", "yes"]);"#.to_owned(),
            ),
            // The helper goes through the same check.
            (
                "helper".to_owned(),
                r#"redis.config_set("appendonly", "yes");"#.to_owned(),
            ),
            (
                "policy".to_owned(),
                r#"redis.config_set("maxmemory-policy", "allkeys-lru");"#.to_owned(),
            ),
        ])
        .collect();
    let playbooks: Vec<(&str, &str)> = scripts.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    let dir = engine_dir("1s", &target(&redis), &[], &playbooks);
    let before: Vec<String> = attempts.iter().map(|(_, p, _)| config_get(&redis, p)).collect();
    for (name, param, _) in attempts {
        assert_denied(
            &run_in(dir.path(), name, &[], &[]),
            name,
            &format!("`CONFIG SET {param}`"),
        );
    }
    let hz = config_get(&redis, "hz");
    assert_denied(
        &run_in(dir.path(), "among_others", &[], &[]),
        "among_others",
        "`CONFIG SET appendonly`",
    );
    assert_denied(
        &run_in(dir.path(), "helper", &[], &[]),
        "helper",
        "`CONFIG SET appendonly`",
    );
    let after: Vec<String> = attempts.iter().map(|(_, p, _)| config_get(&redis, p)).collect();
    assert_eq!(before, after, "a denied CONFIG SET changed the server");
    assert_eq!(config_get(&redis, "hz"), hz);

    // What a remediation needs still works.
    assert_ran(&run_in(dir.path(), "policy", &[], &[]), "policy");
    assert_eq!(config_get(&redis, "maxmemory-policy"), "allkeys-lru");

    // And the config can allow one parameter more, and only that one.
    let allowing = format!(
        "{}\n[playbooks]\nallow_commands = [\"CONFIG SET appendonly\"]\n",
        target(&redis)
    );
    set_config(dir.path(), &allowing);
    assert_ran(&run_in(dir.path(), "appendonly", &[], &[]), "appendonly (allowed)");
    assert_eq!(config_get(&redis, "appendonly"), "yes");
    assert_denied(
        &run_in(dir.path(), "save", &[], &[]),
        "save (still denied)",
        "`CONFIG SET save`",
    );
    assert_eq!(config_get(&redis, "save"), "3600 1");
}

#[test]
fn maxmemory_is_set_only_within_bounds_of_the_memory_in_use() {
    let redis = TestRedis::start(&[("maxmemory", "1gb")]);
    let set = |factor: &str| {
        format!(r#"let used = redis.info("memory").used_memory; redis.config_set("maxmemory", {factor}); used"#)
    };
    let (below, zero, double, in_multi) = (
        set("used / 2"),
        set("0"),
        set("used * 2"),
        r#"redis.cmd(["MULTI"]); redis.cmd(["CONFIG", "SET", "maxmemory", "100mb"]); redis.cmd(["EXEC"]);"#,
    );
    let dir = engine_dir(
        "1s",
        &target(&redis),
        &[],
        &[
            ("below", below.as_str()),
            ("zero", zero.as_str()),
            ("double", double.as_str()),
            ("in_multi", in_multi),
            ("human", r#"redis.cmd(["CONFIG", "SET", "maxmemory", "512mb"]);"#),
        ],
    );
    let gb = (1u64 << 30).to_string();
    let run = run_in(dir.path(), "below", &[], &[]);
    assert_denied(&run, "below", "`CONFIG SET maxmemory`");
    assert!(run.text.contains("memory in use"), "{}", run.text);
    assert_eq!(config_get(&redis, "maxmemory"), gb);
    let run = run_in(dir.path(), "zero", &[], &[]);
    assert_denied(&run, "zero", "`CONFIG SET maxmemory`");
    assert!(run.text.contains("removes the memory limit"), "{}", run.text);
    assert_eq!(config_get(&redis, "maxmemory"), gb);
    // Inside MULTI the memory cannot be read (INFO would be queued), so it
    // is refused; the transaction goes with the run's connection.
    let run = run_in(dir.path(), "in_multi", &[], &[]);
    assert_denied(&run, "in_multi", "`CONFIG SET maxmemory`");
    assert!(run.text.contains("MULTI"), "{}", run.text);
    assert_eq!(config_get(&redis, "maxmemory"), gb);

    let run = run_in(dir.path(), "double", &["--json"], &[]);
    assert_ran(&run, "double");
    let record: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let used: u64 = record["outcome"]["result"].as_str().unwrap().parse().unwrap();
    assert_eq!(config_get(&redis, "maxmemory"), (used * 2).to_string());
    assert_ran(&run_in(dir.path(), "human", &[], &[]), "human");
    assert_eq!(config_get(&redis, "maxmemory"), (512u64 << 20).to_string());
}

#[test]
fn a_renamed_command_keeps_the_rules_of_the_command_it_is() {
    let redis = TestRedis::start(&[("rename-command", "CONFIG CFG_9f8e")]);
    let cfg_get = |param: &str| {
        redis
            .cli(&["CFG_9f8e", "GET", param])
            .lines()
            .nth(1)
            .unwrap_or("")
            .to_owned()
    };
    let playbooks = [
        ("appendonly", r#"redis.cmd(["CFG_9f8e", "SET", "appendonly", "yes"]);"#),
        (
            "requirepass",
            r#"redis.cmd(["cfg_9f8e", "set", "requirepass", "owned"]);"#,
        ),
        ("rewrite", r#"redis.cmd(["CFG_9f8e", "REWRITE"]);"#),
        (
            "policy",
            r#"redis.cmd(["CFG_9f8e", "SET", "maxmemory-policy", "allkeys-lru"]);"#,
        ),
    ];
    // Allowed by its bare name, as before renamed_commands existed: that
    // lets the name through, never its denied subcommands.
    let config = format!(
        "{}\n[playbooks]\nrenamed_commands = {{ CONFIG = \"CFG_9f8e\" }}\nallow_commands = [\"CFG_9f8e\"]\n",
        target(&redis)
    );
    let dir = engine_dir("1s", &config, &[], &playbooks);
    for (name, form) in [
        ("appendonly", "`CONFIG SET appendonly`"),
        ("requirepass", "`CONFIG SET requirepass`"),
        ("rewrite", "`CONFIG REWRITE`"),
    ] {
        let run = run_in(dir.path(), name, &[], &[]);
        assert_denied(&run, name, form);
        assert!(run.text.contains("is CONFIG, renamed"), "{}", run.text);
    }
    assert_eq!(cfg_get("appendonly"), "no");
    assert_eq!(cfg_get("requirepass"), "");
    assert_ran(&run_in(dir.path(), "policy", &[], &[]), "policy");
    assert_eq!(cfg_get("maxmemory-policy"), "allkeys-lru");

    // `redops check` says the bare name allows nothing.
    let check = run_redops(
        &["check", "--config", dir.path().join("redops.toml").to_str().unwrap()],
        &[],
    );
    let text = String::from_utf8_lossy(&check.stderr);
    assert!(text.contains("`CFG_9f8e` names no form the policy denies"), "{text}");

    // Undeclared, the renamed name is refused outright, even when allowed.
    let undeclared = format!("{}\n[playbooks]\nallow_commands = [\"CFG_9f8e\"]\n", target(&redis));
    let dir = engine_dir("1s", &undeclared, &[], &playbooks);
    let run = run_in(dir.path(), "policy", &[], &[]);
    assert!(!run.ok, "{}", run.text);
    assert!(run.text.contains("renamed_commands"), "{}", run.text);
    assert_eq!(cfg_get("appendonly"), "no");
}

#[test]
fn exec_children_see_only_the_environment_their_entry_names() {
    let redis = TestRedis::start(&[]);
    let config = format!(
        "{}\n[exec.show_env]\ncommand = \"/usr/bin/env\"\ntimeout = \"5s\"\n\
         env = {{ WARM_SCOPE = \"critical\", API_TOKEN = \"${{REDOPS_POLICY_TEST_TOKEN}}\" }}\n",
        target(&redis)
    );
    // The child's environment, one variable a line; the token's value is
    // not echoed (a run's result is not redacted), only its length.
    let show = r#"
        let lines = [];
        for l in exec("show_env").stdout.split("\n") {
            if l.starts_with("API_TOKEN=") {
                lines.push(`API_TOKEN has ${l.len() - 10} characters`);
            } else if l != "" {
                lines.push(l);
            }
        }
        lines.sort();
        let out = "";
        for l in lines { out += l + "\n"; }
        out
    "#;
    let dir = engine_dir("1s", &config, &[], &[("show_env", show)]);
    let run = run_in(
        dir.path(),
        "show_env",
        &["--json"],
        &[
            ("REDOPS_POLICY_TEST_TOKEN", "tok-5f1e2d"),
            ("AWS_SECRET_ACCESS_KEY", "leaked-if-you-see-this"),
        ],
    );
    assert_ran(&run, "show_env");
    let record: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let env = record["outcome"]["result"].as_str().unwrap();
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        [
            "API_TOKEN has 10 characters",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "WARM_SCOPE=critical"
        ],
        "the child's environment"
    );
    assert!(!run.text.contains("leaked-if-you-see-this"), "{}", run.text);
}

#[test]
fn a_background_child_holding_stdout_dies_at_the_exec_timeout() {
    let redis = TestRedis::start(&[]);
    let pid_file = tempfile::NamedTempFile::new().unwrap();
    let config = format!(
        "{}\n[exec.leaky]\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"sleep 30 & echo $! > {}; echo started\"]\n\
         timeout = \"1s\"\n",
        target(&redis),
        pid_file.path().display()
    );
    let dir = engine_dir("1s", &config, &[], &[("leaky", r#"exec("leaky")"#)]);
    let run = run_in(dir.path(), "leaky", &[], &[]);
    assert!(!run.ok, "{}", run.text);
    assert!(run.text.contains("still held its output open"), "{}", run.text);
    assert!(run.took < Duration::from_secs(8), "the run lasted {:?}", run.took);
    let pid = std::fs::read_to_string(pid_file.path()).unwrap().trim().to_owned();
    assert!(!pid.is_empty());
    // Gone, or a zombie nobody has reaped yet: not sleeping.
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z'))
        })
    };
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(50), gone),
        "the background `sleep 30` (pid {pid}) outlived the timeout"
    );
}

#[test]
fn http_reaches_only_the_hosts_http_allow_names() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let post = format!(r#"http.post("{}", #{{ x: 1 }}).status"#, hook.url_for("/post"));
    let get = format!(r#"http.get("{}").status"#, hook.url_for("/get"));
    let playbooks = [("post", post.as_str()), ("get", get.as_str())];
    let with_allow = |hosts: &str| format!("{}\n[playbooks]\nhttp_allow = {hosts}\n", target(&redis));

    let dir = engine_dir("1s", &with_allow("[\"localhost\", \"127.0.0.1:1\"]"), &[], &playbooks);
    for name in ["post", "get"] {
        let run = run_in(dir.path(), name, &[], &[]);
        assert!(!run.ok, "{name} ran:\n{}", run.text);
        assert!(run.text.contains(POLICY), "{name}:\n{}", run.text);
        assert!(
            run.text.contains(&format!("127.0.0.1:{}", hook.port())),
            "the denial names the host:\n{}",
            run.text
        );
        assert!(run.text.contains("http_allow"), "{}", run.text);
    }
    // A dry run is denied the same way: the policy decides before the dry run.
    let run = run_in(dir.path(), "post", &["--dry-run"], &[]);
    assert!(!run.ok && run.text.contains(POLICY), "{}", run.text);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        hook.received().is_empty(),
        "a denied request arrived:\n{}",
        hook.describe()
    );

    let dir = engine_dir(
        "1s",
        &with_allow(&format!("[\"127.0.0.1:{}\"]", hook.port())),
        &[],
        &playbooks,
    );
    assert_ran(&run_in(dir.path(), "post", &[], &[]), "post");
    assert_ran(&run_in(dir.path(), "get", &[], &[]), "get");
    let received = hook.wait_for_count(2, Duration::from_secs(5));
    assert_eq!(
        received
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect::<Vec<_>>(),
        [("POST", "/post"), ("GET", "/get")]
    );
}

#[test]
fn a_dry_run_sends_no_http_request_at_all() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let script = format!(
        r#"let g = http.get("{}"); let p = http.post("{}", "x"); `${{g.status}} ${{p.status}}`"#,
        hook.url_for("/status"),
        hook.url_for("/hook")
    );
    let dir = engine_dir("1s", &target(&redis), &[], &[("calls", script.as_str())]);
    let run = run_in(dir.path(), "calls", &["--dry-run"], &[]);
    assert_ran(&run, "calls");
    assert!(run.text.contains("0 0"), "both calls answer status 0:\n{}", run.text);
    assert!(run.text.contains("not sent (dry run)"), "{}", run.text);
    std::thread::sleep(Duration::from_millis(200));
    assert!(hook.received().is_empty(), "a dry run sent:\n{}", hook.describe());
    // The same playbook for real does reach the receiver.
    assert_ran(&run_in(dir.path(), "calls", &[], &[]), "calls");
    hook.wait_for_count(2, Duration::from_secs(5));
}

/// An HTTP server that answers every request with a 302 to `location`.
fn redirector(location: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                &stream,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    port
}

#[test]
fn a_redirect_to_another_host_is_followed_only_when_that_host_is_allowed() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    // `localhost` and `127.0.0.1` are two hosts to the policy.
    let other_host = redirector(format!("http://localhost:{}/landed", hook.port()));
    let same_host = redirector(format!("http://127.0.0.1:{}/same-host", hook.port()));
    let playbooks = [
        (
            "other",
            format!(r#"http.get("http://127.0.0.1:{other_host}/start").status"#),
        ),
        (
            "same",
            format!(r#"http.get("http://127.0.0.1:{same_host}/start").status"#),
        ),
    ];
    let playbooks: Vec<(&str, &str)> = playbooks.iter().map(|(n, s)| (*n, s.as_str())).collect();
    let with = |playbooks_section: &str| format!("{}\n[playbooks]\n{playbooks_section}\n", target(&redis));

    for section in ["http_allow = [\"127.0.0.1\"]", ""] {
        let dir = engine_dir("1s", &with(section), &[], &playbooks);
        let run = run_in(dir.path(), "other", &[], &[]);
        assert!(!run.ok, "[{section}]: the redirect was followed:\n{}", run.text);
        assert!(run.text.contains(POLICY), "{}", run.text);
        assert!(
            run.text
                .contains(&format!("redirect to another host, `localhost:{}`", hook.port()))
                || run.text.contains(&format!("redirect to `localhost:{}`", hook.port())),
            "{}",
            run.text
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        hook.received().is_empty(),
        "a denied redirect arrived:\n{}",
        hook.describe()
    );

    // Without the list, a redirect to the same host is followed.
    let dir = engine_dir("1s", &with(""), &[], &playbooks);
    assert_ran(&run_in(dir.path(), "same", &[], &[]), "same");
    hook.wait_for(Duration::from_secs(5), |r| r.iter().any(|r| r.path == "/same-host"));

    // Naming the other host lets the redirect through.
    let dir = engine_dir(
        "1s",
        &with("http_allow = [\"127.0.0.1\", \"localhost\"]"),
        &[],
        &playbooks,
    );
    assert_ran(&run_in(dir.path(), "other", &[], &[]), "other");
    hook.wait_for(Duration::from_secs(5), |r| r.iter().any(|r| r.path == "/landed"));
}

#[test]
fn a_restore_without_a_pre_restore_backup_needs_the_config() {
    let redis = TestRedis::start(&[]);
    for n in 0..5 {
        redis.cli(&["SET", &format!("keep:{n}"), "backed up"]);
    }
    let playbooks = [
        ("take", r#"backup.create(#{ type: "full" }).id"#),
        (
            "restore_raw",
            r#"backup.restore(params.id, #{ confirm: true, pre_backup: false }).restored"#,
        ),
        ("count", r#"backup.list().len()"#),
    ];
    let dir = engine_dir("1s", &target(&redis), &[], &playbooks);
    let run = run_in(dir.path(), "take", &["--json"], &[]);
    assert_ran(&run, "take");
    let record: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let id = record["outcome"]["result"].as_str().unwrap().to_owned();
    redis.cli(&["SET", "keep:0", "changed since"]);
    let param = format!("id={id}");

    let run = run_in(dir.path(), "restore_raw", &["--param", &param], &[]);
    assert!(!run.ok, "{}", run.text);
    assert!(run.text.contains(POLICY), "{}", run.text);
    assert!(run.text.contains("allow_restore_without_backup = true"), "{}", run.text);
    assert_eq!(redis.cli(&["GET", "keep:0"]), "changed since");
    for dry in [&["--dry-run"][..], &[]] {
        let run = run_in(
            dir.path(),
            "restore_raw",
            &[&["--param", &param][..], dry].concat(),
            &[],
        );
        assert!(!run.ok && run.text.contains(POLICY), "{dry:?}:\n{}", run.text);
    }
    let count = run_in(dir.path(), "count", &["--json"], &[]);
    let record: serde_json::Value = serde_json::from_str(&count.stdout).unwrap();
    assert_eq!(record["outcome"]["result"], "1", "only the one backup taken");

    let allowing = format!("{}\n[playbooks]\nallow_restore_without_backup = true\n", target(&redis));
    set_config(dir.path(), &allowing);
    assert_ran(
        &run_in(dir.path(), "restore_raw", &["--param", &param], &[]),
        "restore_raw",
    );
    assert_eq!(redis.cli(&["GET", "keep:0"]), "backed up");
    let count = run_in(dir.path(), "count", &["--json"], &[]);
    let record: serde_json::Value = serde_json::from_str(&count.stdout).unwrap();
    assert_eq!(record["outcome"]["result"], "1", "no pre-restore backup was taken");
}
