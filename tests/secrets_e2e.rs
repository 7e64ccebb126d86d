//! Every secret of a config, through a whole run: the Redis password (right
//! for one target, wrong for another, so an authentication error is
//! logged), the API token, a webhook's bearer header and HMAC key, a
//! PagerDuty routing key and an SMTP password. None of them may appear in
//! the engine's log, the API's answers, `/metrics`, `redops check`,
//! `redops status --json` or `redops alerts list`.
//!
//! Then the secrets the config does not mark as such, and the ones that
//! reach an output through a dependency's error message: a password in a
//! target's URL, a webhook URL's path and query, a 3-character password.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, run_redops, wait_until};

const SECRETS: &[(&str, &str)] = &[
    ("REDOPS_T_REDIS_PASSWORD", "redis-pass-7f3a91c2e4b8"),
    ("REDOPS_T_WRONG_PASSWORD", "wrong-pass-0d2c4e6a8b1f"),
    ("REDOPS_T_API_TOKEN", "api-token-5e9b1c3d7f2a"),
    ("REDOPS_T_BEARER", "bearer-9c8b7a6d5e4f"),
    ("REDOPS_T_HMAC", "hmac-key-1a2b3c4d5e6f"),
    ("REDOPS_T_ROUTING_KEY", "pd-key-6f5e4d3c2b1a"),
    ("REDOPS_T_SMTP_PASSWORD", "smtp-pass-a1b2c3d4e5f6"),
];

fn assert_no_secret(what: &str, text: &str) {
    for (_, secret) in SECRETS {
        assert!(!text.contains(secret), "{what} shows a secret ({secret}):\n{text}");
    }
}

#[test]
fn no_secret_appears_in_any_output_of_a_run() {
    let redis = TestRedis::start(&[("requirepass", SECRETS[0].1)]);
    let hook = WebhookReceiver::start();
    let port = redops::lab::process::free_port().unwrap();
    let url = redis.url(0);
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{url}\"\npassword = \"${{REDOPS_T_REDIS_PASSWORD}}\"\n\
         probes = {{ marker = \"GET marker\" }}\n\n\
         [[target]]\nname = \"locked\"\nurl = \"{url}\"\npassword = \"${{REDOPS_T_WRONG_PASSWORD}}\"\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\nhmac_secret = \"${{REDOPS_T_HMAC}}\"\n\
         headers = {{ Authorization = \"Bearer ${{REDOPS_T_BEARER}}\" }}\n\n\
         [receiver.pager]\ntype = \"webhook\"\nformat = \"pagerduty\"\nurl = \"{}\"\n\
         routing_key = \"${{REDOPS_T_ROUTING_KEY}}\"\n\n\
         [receiver.mail]\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:1\"\ntls = \"none\"\nusername = \"redops\"\n\
         password = \"${{REDOPS_T_SMTP_PASSWORD}}\"\nfrom = \"redops@example.com\"\nto = [\"oncall@example.com\"]\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"${{REDOPS_T_API_TOKEN}}\"\n",
        hook.url(),
        hook.url_for("/pager")
    );
    let rules = "[[rule]]\nname = \"marker_set\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"critical\"\n\n\
                 [[rule]]\nname = \"redis_down\"\nsource = \"health\"\nwhen = \"redis_up == 0\"\nseverity = \"critical\"\n";
    let dir = engine_dir("300ms", &config, &[("main", rules)], &[]);
    let path = dir.path().join("redops.toml");
    let path = path.to_str().unwrap();

    let mut redops = Redops::start_with_env(dir.path(), &[], SECRETS);
    redops.wait_log("Engine started", Duration::from_secs(10));
    let authed = redis::Client::open(format!("redis://:{}@127.0.0.1:{}/0", SECRETS[0].1, redis.port())).unwrap();
    let _: () = redis::cmd("SET")
        .arg("marker")
        .arg(1)
        .query(&mut authed.get_connection().unwrap())
        .unwrap();
    // The page goes out signed and with its header; the wrong password and
    // the unreachable SMTP server are logged.
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "marker_set", "firing").is_empty()
            && alerts(r, "redis_down", "firing")
                .iter()
                .any(|a| a.body["target"] == "locked")
    });
    assert_eq!(
        alerts(&got, "marker_set", "firing")[0].header("authorization"),
        Some(format!("Bearer {}", SECRETS[3].1).as_str())
    );
    redops.wait_log("receiver=mail", Duration::from_secs(10));

    let http = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for endpoint in [
        "/health",
        "/health/redis",
        "/metrics",
        "/api/v1/targets",
        "/api/v1/alerts",
        "/api/v1/runs",
        "/api/v1/silences",
    ] {
        let body = http.get(format!("{base}{endpoint}")).send().unwrap().text().unwrap();
        assert_no_secret(endpoint, &body);
    }
    // A wrong token is refused without echoing what was sent or expected.
    let refused = http
        .post(format!("{base}/api/v1/silences"))
        .bearer_auth("not-the-token")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_no_secret("a refused request", &refused.text().unwrap());

    for args in [
        vec!["check", "--config", path],
        vec!["check", "--config", path, "--format", "json"],
        vec!["status", "--config", path, "--json"],
        vec!["alerts", "list", "--config", path],
    ] {
        let out = run_redops(&args, SECRETS);
        assert_no_secret(&args.join(" "), &String::from_utf8_lossy(&out.stdout));
        assert_no_secret(&args.join(" "), &String::from_utf8_lossy(&out.stderr));
    }
    assert!(redops.terminate().success(), "{}", redops.output());
    let log = redops.output();
    assert!(log.contains("locked"), "the failing target is in the log:\n{log}");
    assert_no_secret("the engine's log", &log);
}

/// Written literally in the config or given as a setting too short to
/// redact by length alone; each reaches some output unless redacted.
const UNMARKED: &[&str] = &[
    // The password of a target's URL; the Redis answering it quotes it.
    "url-pass-8c1d2e4f",
    // A wrong password in a target's URL: the connection fails.
    "wrong-url-pass-5b6c",
    // A webhook's basic-auth password, and the tokens in its path and query.
    "hook-basic-pass-4d2e",
    "slack-path-token-3e5f",
    "slack-query-token-9a7b",
    // A 3-character password from the environment.
    "q~7",
];

fn assert_none_of(what: &str, text: &str) {
    for secret in UNMARKED {
        assert!(!text.contains(secret), "{what} shows a secret ({secret}):\n{text}");
    }
}

#[test]
fn no_url_secret_short_secret_or_secret_quoted_by_a_dependency_appears() {
    // Redis quotes the arguments of a command it does not know: with AUTH
    // renamed away, its answer to a backup's AUTH carries the password.
    let echo = TestRedis::start(&[("rename-command", "AUTH \"\"")]);
    let locked = TestRedis::start(&[("requirepass", "the-right-one-71c2")]);
    let plain = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let api_port = redops::lab::process::free_port().unwrap();
    // Nothing listens on port 1: every delivery and every POST to it fails,
    // and reqwest's error names the URL.
    let slack = "http://hookuser:hook-basic-pass-4d2e@127.0.0.1:1/services/T0/B0/slack-path-token-3e5f\
                 ?auth=slack-query-token-9a7b";
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n\
         [[target]]\nname = \"urlpass\"\nurl = \"redis://:url-pass-8c1d2e4f@127.0.0.1:{}/0\"\n\n\
         [[target]]\nname = \"short\"\nurl = \"{}\"\npassword = \"${{REDOPS_T_SHORT}}\"\n\n\
         [[target]]\nname = \"wrongurl\"\nurl = \"redis://:wrong-url-pass-5b6c@127.0.0.1:{}/0\"\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [receiver.slack]\ntype = \"webhook\"\nformat = \"slack\"\nurl = \"{slack}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{api_port}\"\n",
        plain.url(0),
        echo.port(),
        echo.url(0),
        locked.port(),
        hook.url(),
    );
    let rules = "[[rule]]\nname = \"marker_set\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"warning\"\n\
                 playbook = \"page_chat\"\ntargets = [\"cache\"]\n\n\
                 [[rule]]\nname = \"redis_down\"\nsource = \"health\"\nwhen = \"redis_up == 0\"\nseverity = \"critical\"\n\
                 summary = \"{{ target }} down: {{ reason }}\"\n";
    let playbook = format!("http.post(\"{slack}\", #{{ text: \"cache needs a human\" }});\n");
    let dir = engine_dir("300ms", &config, &[("main", rules)], &[("page_chat", &playbook)]);
    let path = dir.path().join("redops.toml");
    let path = path.to_str().unwrap();
    let env = [("REDOPS_T_SHORT", "q~7")];

    let mut redops = Redops::start_with_env(dir.path(), &[], &env);
    redops.wait_log("Engine started", Duration::from_secs(10));
    plain.cli(&["SET", "marker", "1"]);
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        let down = alerts(r, "redis_down", "firing");
        ["urlpass", "short", "wrongurl"]
            .iter()
            .all(|t| down.iter().any(|a| a.body["target"] == *t))
    });
    let wrong = alerts(&got, "redis_down", "firing")
        .into_iter()
        .find(|a| a.body["target"] == "wrongurl")
        .unwrap();
    assert!(
        wrong.body["summary"]
            .as_str()
            .unwrap()
            .contains("Password authentication failed"),
        "the wrong URL password is what failed: {}",
        wrong.body
    );
    for received in &got {
        assert_none_of("a webhook body", &received.text());
    }

    // The playbook's POST fails, and reqwest's message quotes the URL.
    let http = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{api_port}");
    let mut runs = String::new();
    let failed = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        runs = http.get(format!("{base}/api/v1/runs")).send().unwrap().text().unwrap();
        runs.contains("\"failed\"")
    });
    assert!(failed, "the playbook run failed: {runs}");
    let run_id = serde_json::from_str::<serde_json::Value>(&runs).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = http
        .get(format!("{base}/api/v1/runs/{run_id}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        run.contains("for url (http://127.0.0.1:1***)") && run.contains("POST http://hookuser:***@127.0.0.1:1***"),
        "the audit and reqwest's error quote the URL, redacted: {run}"
    );
    for endpoint in [
        "/health",
        "/health/redis",
        "/metrics",
        "/api/v1/targets",
        "/api/v1/alerts",
        "/api/v1/runs",
        "/api/v1/silences",
    ] {
        let body = http.get(format!("{base}{endpoint}")).send().unwrap().text().unwrap();
        assert_none_of(endpoint, &body);
    }
    assert_none_of("a run", &run);

    // A backup speaks to Redis itself; the echoing Redis quotes each
    // password back in its error.
    for target in ["urlpass", "short"] {
        let out = run_redops(
            &[
                "backup", "create", "--config", path, "--target", target, "--type", "rdb",
            ],
            &env,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("with args beginning with: '***'"),
            "Redis quoted the password of {target}, redacted:\n{stderr}"
        );
        assert_none_of("redops backup create", &stderr);
        assert_none_of("redops backup create", &String::from_utf8_lossy(&out.stdout));
    }
    for args in [
        vec!["check", "--config", path],
        vec!["check", "--config", path, "--format", "json"],
        vec!["status", "--config", path, "--json"],
        vec!["alerts", "list", "--config", path],
        vec!["runs", "show", &run_id, "--config", path],
    ] {
        let out = run_redops(&args, &env);
        assert_none_of(&args.join(" "), &String::from_utf8_lossy(&out.stdout));
        assert_none_of(&args.join(" "), &String::from_utf8_lossy(&out.stderr));
    }

    // The slack receiver's deliveries fail and are retried from the outbox.
    redops.wait_log("receiver=slack", Duration::from_secs(10));
    assert!(redops.terminate().success(), "{}", redops.output());
    assert_none_of("the engine's log", &redops.output());
    let db = rusqlite::Connection::open(dir.path().join("state/redops.db")).unwrap();
    let rows = |sql: &str| -> String {
        let mut statement = db.prepare(sql).unwrap();
        let rows = statement
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        assert!(!rows.is_empty(), "{sql} found no row");
        rows.join("\n")
    };
    let outbox = rows("SELECT receiver || ' ' || payload || ' ' || IFNULL(last_error, '') FROM outbox");
    assert!(outbox.contains("slack "), "{outbox}");
    assert_none_of("the outbox", &outbox);
    assert_none_of(
        "the stored runs",
        &rows("SELECT IFNULL(detail, '') || ' ' || audit || ' ' || findings FROM playbook_runs"),
    );
}

/// A playbook can read a secret back from Redis (`CONFIG GET requirepass`
/// is allowed); what it logs and returns is stored in the run record and
/// printed by `playbook run` and `runs show`: redacted there too.
#[test]
fn a_secret_a_playbook_returns_or_logs_is_redacted_in_its_run_record() {
    let redis = TestRedis::start(&[("requirepass", SECRETS[0].1)]);
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\npassword = \"${{REDOPS_T_REDIS_PASSWORD}}\"\n",
        redis.url(0)
    );
    let leak = r#"let pass = redis.cmd(["CONFIG", "GET", "requirepass"])[1];
log.info(`the password is ${pass}`);
`returned ${pass}`"#;
    let dir = engine_dir("1s", &config, &[], &[("leak", leak)]);
    let path = dir.path().join("redops.toml");
    let path = path.to_str().unwrap();
    let out = run_redops(
        &["playbook", "run", "leak", "--target", "cache", "--config", path],
        SECRETS,
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert_no_secret("playbook run", &printed);
    assert!(
        printed.contains("returned ***"),
        "the result is there, redacted:\n{printed}"
    );

    let listed = run_redops(&["runs", "list", "--json", "--config", path], SECRETS);
    let runs: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("runs list --json");
    let id = runs[0]["id"].as_str().expect("one run").to_owned();
    let shown = run_redops(&["runs", "show", &id, "--json", "--config", path], SECRETS);
    let record = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert_no_secret("runs show", &record);
    assert!(
        record.contains("the password is ***"),
        "the finding is there, redacted:\n{record}"
    );
}

/// `--log-format json` writes one JSON object a line, for Loki or
/// Elasticsearch, and redacts them as it does text lines.
#[test]
fn json_logs_are_one_object_a_line_and_carry_no_secret() {
    let redis = TestRedis::start(&[("requirepass", SECRETS[0].1)]);
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\npassword = \"${{REDOPS_T_REDIS_PASSWORD}}\"\n\n\
         [[target]]\nname = \"locked\"\nurl = \"{}\"\npassword = \"${{REDOPS_T_WRONG_PASSWORD}}\"\n",
        redis.url(0),
        redis.url(0)
    );
    let rules =
        "[[rule]]\nname = \"redis_down\"\nsource = \"health\"\nwhen = \"redis_up == 0\"\nseverity = \"critical\"\n";
    let dir = engine_dir("300ms", &config, &[("main", rules)], &[]);
    let mut redops = Redops::start_with_env(dir.path(), &["--log-format", "json"], SECRETS);
    // The wrong password's target goes down: its error is logged.
    redops.wait_log("redis_down", Duration::from_secs(10));
    assert!(redops.terminate().success(), "{}", redops.output());
    let log = redops.output();
    assert_no_secret("the JSON log", &log);
    let mut events = 0;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(
            event["fields"]["message"].is_string() && event["level"].is_string(),
            "{line}"
        );
        events += 1;
    }
    assert!(events >= 3, "too few JSON events:\n{log}");
    assert!(log.contains("\"message\":\"Engine started\""), "{log}");
}
