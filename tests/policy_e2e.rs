//! The playbook command policy against a real Redis, one bypass attempt per
//! playbook: case tricks, a renamed command, MULTI/EXEC, EVAL, FCALL,
//! `CONFIG SET requirepass` hidden among other parameters. Each run fails
//! naming the policy, and the data is still there afterwards.

mod harness;

use harness::{TestRedis, engine_dir, run_redops};

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

#[test]
fn no_wrapping_or_spelling_gets_a_denied_command_past_the_policy() {
    let redis = TestRedis::start(&[]);
    for n in 0..10 {
        redis.cli(&["SET", &format!("keep:{n}"), "x"]);
    }
    let config = format!("[[target]]\nname = \"cache\"\nurl = \"{}\"\n", redis.url(0));
    let dir = engine_dir("1s", &config, &[], ATTEMPTS);
    let path = dir.path().join("redops.toml");
    for (name, _) in ATTEMPTS {
        let out = run_redops(
            &[
                "playbook",
                "run",
                name,
                "--target",
                "cache",
                "--config",
                path.to_str().unwrap(),
            ],
            &[],
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(out.status.code(), Some(0), "{name} ran:\n{all}");
        assert!(all.contains("denied by the playbook command policy"), "{name}:\n{all}");
        assert_eq!(redis.cli(&["DBSIZE"]).trim(), "10", "{name} changed the data");
    }
    assert_eq!(
        redis
            .cli(&["CONFIG", "GET", "requirepass"])
            .lines()
            .nth(1)
            .unwrap_or(""),
        ""
    );
    assert_eq!(redis.cli(&["PING"]).trim(), "PONG");
}
