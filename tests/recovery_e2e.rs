//! redops and its receivers failing around an incident: a `kill -9` in the
//! middle of a playbook run, a webhook receiver that hangs, an SMTP server
//! that is down when the page goes out, and every Sentinel of a group
//! killed and brought back.

mod harness;

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{Redops, SmtpServer, TestRedis, WebhookReceiver, alerts, engine_dir, run_redops};
use redops::lab::topology::Topology;

fn marker_target(redis: &TestRedis) -> String {
    format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n",
        redis.url(0)
    )
}

const OUTAGE: &str = "[[rule]]\nname = \"outage\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\n\
                      severity = \"critical\"\nplaybook = \"slow_fix\"\n";

/// A remediation that takes a while: long enough to be killed in the middle.
const SLOW_FIX: &str = "log.info(\"fixing\");\nredis.cmd([\"INCR\", \"fix_started\"]);\nsleep(20);\n\
                        redis.cmd([\"INCR\", \"fix_finished\"]);\n";

#[test]
fn kill_9_during_a_playbook_run_records_it_interrupted_and_the_alert_keeps_escalating() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let receivers: String = ["primary", "secondary"]
        .iter()
        .map(|r| {
            format!(
                "[receiver.{r}]\ntype = \"webhook\"\nurl = \"{}\"\n\n",
                hook.url_for(&format!("/{r}"))
            )
        })
        .collect();
    let config = [marker_target(&redis), receivers].concat()
        + "[playbooks]\ntimeout = \"60s\"\nallow_commands = [\"INCR\"]\n\n\
           [[route]]\nmatch = { severity = \"critical\" }\nescalation = \"critical\"\n\n\
           [escalation.critical]\nsteps = [\n  { after = \"0s\", notify = [\"primary\"] },\n  \
           { after = \"6s\", notify = [\"secondary\"] },\n]\n";
    let dir = engine_dir("300ms", &config, &[("outage", OUTAGE)], &[("slow_fix", SLOW_FIX)]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    redis.cli(&["SET", "marker", "1"]);
    hook.wait_for(Duration::from_secs(10), |r| r.iter().any(|m| m.path == "/primary"));
    let mut conn = redis.conn();
    let started = harness::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        redis::cmd("GET")
            .arg("fix_started")
            .query::<Option<u32>>(&mut conn)
            .ok()
            .flatten()
            == Some(1)
    });
    assert!(started, "the playbook did not start:\n{}", redops.output());
    redops.kill9();

    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("marked interrupted", Duration::from_secs(10));
    // The escalation goes on from where it was: the secondary is paged at
    // 6 s, by the restarted engine.
    let got = hook.wait_for(Duration::from_secs(15), |r| r.iter().any(|m| m.path == "/secondary"));
    let firing_pages = got
        .iter()
        .filter(|m| m.path == "/primary" && m.body["status"] == "firing")
        .count();
    assert_eq!(
        firing_pages,
        1,
        "the restored alert paged the primary again:\n{}",
        hook.describe()
    );

    let config_path = dir.path().join("redops.toml");
    let runs = run_redops(
        &["runs", "list", "--config", config_path.to_str().unwrap(), "--json"],
        &[],
    );
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("runs list --json");
    let runs = runs.as_array().expect("a list of runs");
    assert_eq!(runs.len(), 1, "the interrupted run is not run again: {runs:#?}");
    assert_eq!(
        runs[0]["outcome"]["kind"].as_str().or(runs[0]["outcome"].as_str()),
        Some("interrupted"),
        "{runs:#?}"
    );

    let alerts_out = run_redops(&["alerts", "list", "--config", config_path.to_str().unwrap()], &[]);
    let listed = String::from_utf8_lossy(&alerts_out.stdout);
    assert!(listed.contains("outage"), "the alert is still firing:\n{listed}");
    let finished: Option<u32> = redis::cmd("GET").arg("fix_finished").query(&mut conn).unwrap();
    assert_eq!(finished, None, "the killed run did not finish");
    assert!(redops.terminate().success(), "{}", redops.output());
}

/// Accepts connections and never answers; counts them.
fn hanging_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hang", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                // Read the request, then hold the connection open, silent.
                while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
        }
    });
    (url, accepted)
}

#[test]
fn a_hanging_receiver_times_out_and_does_not_delay_the_others() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (hang_url, attempts) = hanging_server();
    let config = marker_target(&redis)
        + format!(
            "[receiver.hang]\ntype = \"webhook\"\nurl = \"{hang_url}\"\ntimeout = \"5s\"\n\n\
             [receiver.fast]\ntype = \"webhook\"\nurl = \"{}\"\n",
            hook.url()
        )
        .as_str();
    let rule = "[[rule]]\nname = \"marker_set\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"warning\"\n";
    let dir = engine_dir("300ms", &config, &[("marker", rule)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    for n in 1..=3 {
        let set_at = Instant::now();
        redis.cli(&["SET", "marker", "1"]);
        let got = hook.wait_for(Duration::from_secs(5), |r| alerts(r, "marker_set", "firing").len() >= n);
        let took = alerts(&got, "marker_set", "firing")[n - 1].at.duration_since(set_at);
        // A sample at 300 ms and the delivery. Held up behind the hanging
        // receiver, it would take its 5 s timeout at least.
        assert!(
            took < Duration::from_millis(2500),
            "alert {n} reached the fast receiver after {took:?}"
        );
        redis.cli(&["SET", "marker", "0"]);
        hook.wait_for(Duration::from_secs(5), |r| {
            alerts(r, "marker_set", "resolved").len() >= n
        });
    }
    // The hanging receiver is retried after each timeout, with backoff.
    let retried = harness::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        attempts.load(Ordering::SeqCst) >= 2
    });
    assert!(
        retried,
        "{} attempts on the hanging receiver",
        attempts.load(Ordering::SeqCst)
    );
    let out = redops.output();
    assert!(
        out.contains("receiver=hang") && out.contains("no response within 5s (timeout)"),
        "{out}"
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn a_page_sent_while_smtp_is_down_arrives_when_it_is_back() {
    let redis = TestRedis::start(&[]);
    let smtp = SmtpServer::start(None);
    let port = smtp.port();
    drop(smtp);
    let config = marker_target(&redis)
        + format!(
            "[receiver.mail]\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:{port}\"\ntls = \"none\"\n\
             from = \"redops@example.com\"\nto = [\"oncall@example.com\"]\ntimeout = \"2s\"\n"
        )
        .as_str();
    let rule = "[[rule]]\nname = \"marker_set\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\nseverity = \"critical\"\n\
                summary = \"marker set on {{ target }}\"\n";
    let dir = engine_dir("300ms", &config, &[("marker", rule)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    redis.cli(&["SET", "marker", "1"]);
    redops.wait_log("receiver=mail", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let smtp = SmtpServer::start_on(port, None);
    let mails = smtp.wait_for_mails(1, Duration::from_secs(60));
    assert!(mails[0].contains("marker set on cache"), "{}", mails[0]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(smtp.mails().len(), 1, "sent once");
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn every_sentinel_killed_then_back_alerts_and_failovers_are_still_followed() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = Topology::start(lab_dir.path()).expect("lab topology");
    let hook = WebhookReceiver::start();
    let list: Vec<String> = lab.sentinel_addrs().iter().map(|s| format!("\"{s}\"")).collect();
    let config = format!(
        "[[sentinel]]\nname = \"lab\"\nmaster = \"mymaster\"\nsentinels = [{}]\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        list.join(", "),
        hook.url()
    );
    let rules = include_str!("../rules/sentinel.toml").replace("for = \"10s\"", "for = \"1s\"");
    let dir = engine_dir(
        "500ms",
        &config,
        &[("sentinel", &rules)],
        &[("sentinel_failover", include_str!("../playbooks/sentinel_failover.rhai"))],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log(&format!("node={}", lab.replica_addr()), Duration::from_secs(10));

    for s in lab.sentinels() {
        s.kill().unwrap();
    }
    let got = hook.wait_for(Duration::from_secs(15), |r| {
        !alerts(r, "sentinel_down", "firing").is_empty()
    });
    let summary = alerts(&got, "sentinel_down", "firing")[0].body["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(summary.starts_with("0 of 3 Sentinels"), "{summary}");
    assert!(redops.is_running());

    for s in lab.sentinels() {
        s.restart().unwrap();
    }
    hook.wait_for(Duration::from_secs(20), |r| {
        !alerts(r, "sentinel_down", "resolved").is_empty()
    });
    // Subscribed again: a failover is seen as it happens.
    let old = lab.master_addr();
    lab.master().kill().unwrap();
    let got = hook.wait_for(Duration::from_secs(30), |r| {
        !alerts(r, "sentinel_failover", "firing").is_empty()
    });
    let summary = alerts(&got, "sentinel_failover", "firing")[0].body["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        summary.contains(&format!("from {old} to {}", lab.replica_addr())),
        "{summary}"
    );
    // Stopping waits for the failover playbook in flight: let it end first.
    hook.wait_for(Duration::from_secs(40), |r| {
        r.iter().any(|m| m.body.get("playbook").is_some())
    });
    assert!(redops.terminate().success(), "{}", redops.output());
}
