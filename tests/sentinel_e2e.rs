//! Sentinel groups on a real topology (a master, a replica, three
//! Sentinels): one failover is one incident, redops follows the new master,
//! notices lost Sentinels and quorum, and reconciles a failover it missed.

mod harness;

use std::time::{Duration, Instant};

use harness::{CuttableProxy, Received, Redops, WebhookReceiver, alerts, engine_dir, run_redops};
use redops::lab::topology::Topology;

const SENTINEL_RULES: &str = include_str!("../rules/sentinel.toml");
const FAILOVER_PLAYBOOK: &str = include_str!("../playbooks/sentinel_failover.rhai");

const MEMORY_RULE: &str = r#"
[[rule]]
name = "memory_critical"
source = "sample"
when = "memory_used_pct > 85"
for = "1s"
severity = "critical"
summary = "Memory at {{ memory_used_pct }}% on {{ target }}"
"#;

fn group_config(sentinels: &[String], hook: &WebhookReceiver) -> String {
    let list: Vec<String> = sentinels.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[[sentinel]]\nname = \"lab\"\nmaster = \"mymaster\"\nsentinels = [{}]\nlabels = {{ env = \"test\" }}\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        list.join(", "),
        hook.url()
    )
}

fn messages(received: &[Received]) -> Vec<&Received> {
    received.iter().filter(|r| r.body["kind"] == "message").collect()
}

/// Polls a Sentinel directly until it names a master other than `old`.
fn wait_for_new_master(sentinel: &str, old: &str) -> String {
    let client = redis::Client::open(format!("redis://{sentinel}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) {
            let reply: Option<(String, String)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg("mymaster")
                .query(&mut conn)
                .unwrap_or(None);
            if let Some((ip, port)) = reply {
                let addr = format!("{ip}:{port}");
                if addr != old {
                    return addr;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no failover within 30 s");
}

#[test]
fn a_failover_is_one_incident_and_redops_follows_the_new_master() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = Topology::start(lab_dir.path()).expect("lab topology");
    let hook = WebhookReceiver::start();
    let dir = engine_dir(
        "500ms",
        &group_config(&lab.sentinel_addrs(), &hook),
        &[("sentinel", SENTINEL_RULES), ("memory", MEMORY_RULE)],
        &[("sentinel_failover", FAILOVER_PLAYBOOK)],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    let (old_master, replica) = (lab.master_addr(), lab.replica_addr());
    redops.wait_log(&format!("node={replica}"), Duration::from_secs(10));

    lab.master().kill().unwrap();
    let new_master = wait_for_new_master(&lab.sentinel_addrs()[0], &old_master);
    assert_eq!(new_master, replica);
    // The old master comes back as a replica of the new one (as an operator
    // would bring it back; Sentinel alone takes 8-20 s to convert it), so the
    // playbook finds a replica online.
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "sentinel_failover", "firing").is_empty()
    });
    let (host, port) = new_master.split_once(':').unwrap();
    let conf = lab.master().config_path();
    let text = format!("{}\nreplicaof {host} {port}\n", std::fs::read_to_string(&conf).unwrap());
    std::fs::write(&conf, text).unwrap();
    lab.master().restart().unwrap();
    let alert = alerts(&got, "sentinel_failover", "firing")[0].clone();
    let summary = alert.body["summary"].as_str().unwrap();
    assert!(summary.contains(&format!("to {new_master}")), "{summary}");
    assert_eq!(alert.body["target"], "lab");

    let got = hook.wait_for(Duration::from_secs(30), |r| !messages(r).is_empty());
    let text = messages(&got)[0].body["body"]["text"].as_str().unwrap().to_owned();
    assert!(text.contains("checks passed"), "{text}\n{}", redops.output());

    // Memory on the new master fires for the new master's address. The
    // replica's output buffer counts in used_memory while it catches up and
    // then drains, so keep topping the data up until the alert comes.
    let client = redis::Client::open(format!("redis://{new_master}")).unwrap();
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
    // The replica holds the same data and may fire too; the master must.
    let target = format!("lab/{new_master}");
    let on_master = |r: &Received| r.body["target"] == target.as_str();
    let fired = harness::wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        harness::fill_memory_to(&mut conn, 95.0);
        alerts(&hook.received(), "memory_critical", "firing")
            .into_iter()
            .any(on_master)
    });
    assert!(
        fired,
        "no memory alert for {target}:\n{}\n{}",
        hook.describe(),
        redops.output()
    );
    let got = hook.received();
    let memory = alerts(&got, "memory_critical", "firing")
        .into_iter()
        .find(|r| on_master(r))
        .unwrap();
    assert_eq!(memory.body["labels"]["role"], "master");
    assert_eq!(memory.body["labels"]["group"], "lab");

    // Three Sentinels published the switch: still one alert, one run.
    std::thread::sleep(Duration::from_secs(2));
    let all = hook.received();
    // The page, then its update with the playbook's outcome.
    let pages: Vec<_> = alerts(&all, "sentinel_failover", "firing")
        .into_iter()
        .filter(|a| a.body.get("playbook").is_none())
        .collect();
    assert_eq!(pages.len(), 1, "{}", hook.describe());
    assert_eq!(messages(&all).len(), 1, "{}", hook.describe());
    assert_eq!(
        redops
            .output()
            .matches("Playbook started playbook=sentinel_failover")
            .count(),
        1
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn lost_sentinels_fire_and_validate_names_the_problem() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = Topology::start(lab_dir.path()).expect("lab topology");
    let hook = WebhookReceiver::start();
    let dir = engine_dir(
        "500ms",
        &group_config(&lab.sentinel_addrs(), &hook),
        &[("sentinel", SENTINEL_RULES)],
        &[("sentinel_failover", FAILOVER_PLAYBOOK)],
    );
    let config = dir.path().join("redops.toml");
    let config = config.to_str().unwrap();
    let ok = run_redops(&["sentinel", "validate", "--config", config], &[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));

    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Following node", Duration::from_secs(10));
    lab.sentinels()[2].kill().unwrap();
    let got = hook.wait_for(Duration::from_secs(20), |r| {
        !alerts(r, "sentinel_down", "firing").is_empty()
    });
    let down = alerts(&got, "sentinel_down", "firing")[0];
    assert_eq!(down.body["summary"], "2 of 3 Sentinels of lab answer");

    lab.sentinels()[1].kill().unwrap();
    hook.wait_for(Duration::from_secs(20), |r| {
        !alerts(r, "sentinel_quorum_lost", "firing").is_empty()
    });
    let out = run_redops(&["sentinel", "validate", "--config", config], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("quorum unreachable"), "{stdout}");
    assert!(
        stdout.contains(&format!("Sentinel {} is unreachable", lab.sentinel_addrs()[1])),
        "{stdout}"
    );
    let json = run_redops(&["sentinel", "status", "--json", "--config", config], &[]);
    let status: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(status[0]["view"]["quorum_ok"], false);
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn a_failover_missed_while_cut_off_is_reconciled() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = Topology::start(lab_dir.path()).expect("lab topology");
    let proxies: Vec<CuttableProxy> = lab.sentinel_addrs().iter().map(|a| CuttableProxy::start(a)).collect();
    let proxied: Vec<String> = proxies.iter().map(CuttableProxy::addr).collect();
    let hook = WebhookReceiver::start();
    let rules = SENTINEL_RULES.replace(
        "summary = \"Failover in {{ group }}",
        "summary = \"reconciled={{ reconciled }} Failover in {{ group }}",
    );
    let dir = engine_dir(
        "500ms",
        &group_config(&proxied, &hook),
        &[("sentinel", &rules)],
        &[("sentinel_failover", FAILOVER_PLAYBOOK)],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Following node", Duration::from_secs(10));

    for p in &proxies {
        p.cut();
    }
    let old = lab.master_addr();
    lab.master().kill().unwrap();
    let new_master = wait_for_new_master(&lab.sentinel_addrs()[0], &old);
    for p in &proxies {
        p.restore();
    }
    let got = hook.wait_for(Duration::from_secs(20), |r| {
        !alerts(r, "sentinel_failover", "firing").is_empty()
    });
    let alert = alerts(&got, "sentinel_failover", "firing")[0];
    let summary = alert.body["summary"].as_str().unwrap();
    assert!(summary.starts_with("reconciled=1 "), "{summary}");
    assert!(summary.contains(&format!("to {new_master}")), "{summary}");
    assert!(
        redops
            .output()
            .contains("Master changed while redops was not listening")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        alerts(&hook.received(), "sentinel_failover", "firing").len(),
        1,
        "{}",
        hook.describe()
    );
    assert!(redops.terminate().success(), "{}", redops.output());
}

/// Asks the Sentinel for a failover until it starts one: right after an
/// earlier failover it may still be in progress or lack a good replica.
fn force_failover(sentinel: &str) {
    let client = redis::Client::open(format!("redis://{sentinel}")).unwrap();
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
    let mut last = String::new();
    let started = harness::wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || match redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg("mymaster")
            .query::<String>(&mut conn)
        {
            Ok(_) => true,
            Err(e) => {
                last = e.to_string();
                false
            }
        },
    );
    assert!(started, "Sentinel did not start a failover: {last}");
}

#[test]
fn failovers_back_and_forth_each_page() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = Topology::start(lab_dir.path()).expect("lab topology");
    let hook = WebhookReceiver::start();
    let dir = engine_dir(
        "500ms",
        &group_config(&lab.sentinel_addrs(), &hook),
        &[("sentinel", SENTINEL_RULES)],
        &[("sentinel_failover", FAILOVER_PLAYBOOK)],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    let (a, b) = (lab.master_addr(), lab.replica_addr());
    redops.wait_log(&format!("node={b}"), Duration::from_secs(10));
    let sentinel = lab.sentinel_addrs()[0].clone();

    // A → B → A → B: three failovers seconds apart, three pages. The third
    // names the same switch as the first, and still is news.
    for (from, to) in [(&a, &b), (&b, &a), (&a, &b)] {
        force_failover(&sentinel);
        assert_eq!(&wait_for_new_master(&sentinel, from), to);
    }

    let pages = |r: &[Received]| -> Vec<String> {
        alerts(r, "sentinel_failover", "firing")
            .into_iter()
            .filter(|a| a.body.get("playbook").is_none())
            .map(|a| a.body["summary"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let three = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        pages(&hook.received()).len() >= 3
    });
    assert!(three, "{:#?}\n{}", pages(&hook.received()), redops.output());
    // Let late copies from the other Sentinels arrive: they must not page.
    std::thread::sleep(Duration::from_secs(2));
    let summaries = pages(&hook.received());
    assert_eq!(summaries.len(), 3, "{summaries:#?}\n{}", redops.output());
    for (summary, to) in summaries.iter().zip([&b, &a, &b]) {
        assert!(summary.ends_with(&format!("to {to}")), "{summaries:?}");
    }
    assert!(redops.terminate().success(), "{}", redops.output());
}
