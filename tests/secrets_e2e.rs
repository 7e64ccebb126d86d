//! Every secret of a config, through a whole run: the Redis password (right
//! for one target, wrong for another, so an authentication error is
//! logged), the API token, a webhook's bearer header and HMAC key, a
//! PagerDuty routing key and an SMTP password. None of them may appear in
//! the engine's log, the API's answers, `/metrics`, `redops check`,
//! `redops status --json` or `redops alerts list`.

mod harness;

use std::time::Duration;

use harness::{Redops, TestRedis, WebhookReceiver, alerts, engine_dir, run_redops};

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
