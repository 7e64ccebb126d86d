//! `redops status` against real servers: the guide's thresholds decide the
//! colours and the exit code.

mod harness;

use harness::{TestRedis, engine_dir, run_redops};

fn status(redis: &TestRedis) -> (Option<i32>, serde_json::Value) {
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n[api]\nenabled = false\n",
        redis.url(0)
    );
    let dir = engine_dir("1s", &config, &[], &[]);
    let path = dir.path().join("redops.toml");
    let out = run_redops(&["status", "--json", "--config", path.to_str().unwrap()], &[]);
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), json)
}

#[test]
fn a_healthy_server_is_ok_and_a_full_one_is_critical() {
    let redis = TestRedis::start(&[("maxmemory", "16mb"), ("maxmemory-policy", "noeviction")]);
    let (code, report) = status(&redis);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["targets"][0]["role"], "master");
    assert_eq!(report["targets"][0]["checks"][0]["metric"], "memory_used_pct");
    assert_eq!(report["targets"][0]["checks"][0]["status"], "ok");

    let mut conn = redis.conn();
    let value = "x".repeat(64 * 1024);
    for i in 0..220 {
        let _: Result<(), _> = redis::cmd("SET")
            .arg(format!("fill:{i}"))
            .arg(&value)
            .query::<()>(&mut conn);
    }
    let (code, report) = status(&redis);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["status"], "critical");
    assert_eq!(report["targets"][0]["checks"][0]["status"], "critical");
}

#[test]
fn an_unreachable_target_is_critical() {
    let redis = TestRedis::start(&[]);
    redis.process.kill().unwrap();
    let (code, report) = status(&redis);
    assert_eq!(code, Some(1));
    assert!(report["targets"][0]["error"].is_string(), "{report}");
}
