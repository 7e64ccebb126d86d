//! The engine on a real Redis Cluster (three masters, three replicas): a
//! killed master is one failover page, its playbook runs once and the
//! sampling follows the promoted replica; a shard that loses both nodes
//! pages the cluster's state and uncovered slots until they come back; a
//! keyspace rule on the cluster counts every master's events as one sum.

mod harness;

use std::time::Duration;

use harness::{Received, Redops, WebhookReceiver, alerts, engine_dir};
use redops::cluster::key_slot;
use redops::lab::cluster::{ClusterLab, slot_ranges};

const CLUSTER_RULES: &str = include_str!("../rules/cluster.toml");
const FAILOVER_PLAYBOOK: &str = include_str!("../playbooks/cluster_failover.rhai");

/// The shipped `redis_down` runs the outage playbook; here it only pages.
const DOWN_RULE: &str = r#"
[[rule]]
name = "redis_down"
source = "health"
when = "redis_up == 0"
severity = "critical"
summary = "Redis target {{ target }} is down: {{ reason }}"
"#;

const MEMORY_RULE: &str = r#"
[[rule]]
name = "memory_critical"
source = "sample"
when = "role == \"master\" && memory_used_pct > 85"
for = "1s"
severity = "critical"
summary = "Memory at {{ memory_used_pct }}% on {{ target }}"
"#;

const LOG_PLAYBOOK: &str = r#"log.info("cluster failover seen on " + target);"#;

fn cluster_config(seed: &str, hook: &WebhookReceiver, extra: &str) -> String {
    format!(
        "[[cluster]]\nname = \"c1\"\nseeds = [\"{seed}\"]\nlabels = {{ env = \"test\" }}\n{extra}\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url()
    )
}

/// The shipped cluster rules, the failover rule running a playbook that logs.
fn rules_with_playbook() -> String {
    let rules = CLUSTER_RULES.replacen("playbook = \"cluster_failover\"\n", "playbook = \"failover_log\"\n", 1);
    assert_ne!(rules, CLUSTER_RULES, "the shipped failover rule runs a playbook");
    rules
}

fn info_field(addr: &str, section: &str, field: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://{addr}")).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
    let info: String = redis::cmd("INFO").arg(section).query(&mut conn).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
}

/// A hash tag whose keys land in `range`.
fn tag_in(range: (u16, u16)) -> String {
    (0..100_000)
        .map(|i| format!("t{i}"))
        .find(|t| (range.0..=range.1).contains(&key_slot(t.as_bytes())))
        .expect("a tag for every range")
}

/// Writes 64 KiB values into the shard's own slots until used_memory passes
/// `pct` of maxmemory (`harness::fill_memory_to` writes keys of any slot,
/// which a cluster node answers with MOVED).
fn fill_shard_to(conn: &mut redis::Connection, range: (u16, u16), pct: f64) {
    let tag = tag_in(range);
    let value = "x".repeat(64 * 1024);
    for i in 0..100_000 {
        let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
        let field = |k: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("INFO memory has no {k}"))
        };
        if field("used_memory") / field("maxmemory") * 100.0 > pct {
            return;
        }
        let _: () = redis::cmd("SET")
            .arg(format!("fill:{{{tag}}}:{i}"))
            .arg(&value)
            .query(conn)
            .unwrap();
    }
    panic!("memory never passed {pct}%");
}

fn pages<'a>(received: &'a [Received], rule: &str) -> Vec<&'a Received> {
    // Playbook outcomes come as updates of the same alert, not pages.
    alerts(received, rule, "firing")
        .into_iter()
        .filter(|a| a.body.get("playbook").is_none())
        .collect()
}

#[test]
fn a_killed_master_is_one_failover_page_and_sampling_follows_the_promoted_replica() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start_with(lab_dir.path(), 3, 1, |spec| spec.with("maxmemory", "32mb")).unwrap();
    let hook = WebhookReceiver::start();
    let rules = rules_with_playbook();
    let dir = engine_dir(
        "500ms",
        &cluster_config(&lab.node(1).addr(), &hook, ""),
        &[("cluster", &rules), ("down", DOWN_RULE), ("memory", MEMORY_RULE)],
        &[("failover_log", LOG_PLAYBOOK)],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    let old_master = lab.node(0).addr();
    let replica = lab.replica_of(0, 0).unwrap().addr();
    redops.wait_log(&format!("node={replica}"), Duration::from_secs(15));

    lab.node(0).kill().unwrap();
    let promoted = harness::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        info_field(&replica, "replication", "role").as_deref() == Some("master")
    });
    assert!(promoted, "the replica was not promoted");
    let got = hook.wait_for(Duration::from_secs(10), |r| !pages(r, "cluster_failover").is_empty());
    let page = pages(&got, "cluster_failover")[0].clone();
    let shard = format!("{}-{}", slot_ranges(3)[0].0, slot_ranges(3)[0].1);
    assert_eq!(page.body["target"], format!("c1/{replica}"), "{}", hook.describe());
    assert_eq!(page.body["labels"]["shard"], shard.as_str());
    assert_eq!(page.body["labels"]["cluster"], "c1");
    assert_eq!(page.body["labels"]["role"], "master");
    let summary = page.body["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("from {old_master} to {replica}")),
        "{summary}"
    );

    // Memory rules see the promoted replica as a master.
    let client = redis::Client::open(format!("redis://{replica}")).unwrap();
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
    fill_shard_to(&mut conn, slot_ranges(3)[0], 95.0);
    let target = format!("c1/{replica}");
    let got = hook.wait_for(Duration::from_secs(20), |r| {
        alerts(r, "memory_critical", "firing")
            .iter()
            .any(|a| a.body["target"] == target.as_str())
    });
    let memory = alerts(&got, "memory_critical", "firing")
        .into_iter()
        .find(|a| a.body["target"] == target.as_str())
        .unwrap();
    assert_eq!(memory.body["labels"]["role"], "master");
    assert_eq!(memory.body["labels"]["shard"], shard.as_str());

    // The old master's redis_down folds into the failover's incident.
    let folded = harness::wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        redops
            .output()
            .lines()
            .any(|l| l.contains("Alert folded into an incident") && l.contains("rule=redis_down"))
    });
    assert!(folded, "redis_down never folded:\n{}", redops.output());
    let all = hook.received();
    assert_eq!(pages(&all, "cluster_failover").len(), 1, "{}", hook.describe());
    let old_target = format!("c1/{old_master}");
    let down_pages: Vec<_> = pages(&all, "redis_down")
        .into_iter()
        .filter(|a| a.body["target"] == old_target.as_str())
        .collect();
    assert!(down_pages.is_empty(), "{}", hook.describe());
    let output = redops.output();
    let runs = output
        .lines()
        .filter(|l| l.contains("Playbook succeeded") && l.contains("playbook=failover_log"))
        .count();
    assert_eq!(runs, 1, "{output}");
    assert!(output.contains("cluster failover seen on"), "{output}");
}

#[test]
fn a_shard_without_any_node_pages_state_and_slots_until_it_is_back() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let hook = WebhookReceiver::start();
    let dir = engine_dir(
        "500ms",
        &cluster_config(&lab.node(1).addr(), &hook, ""),
        &[("cluster", CLUSTER_RULES)],
        &[("cluster_failover", FAILOVER_PLAYBOOK)],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    let replica = lab.replica_of(0, 0).unwrap();
    redops.wait_log(&format!("node={}", replica.addr()), Duration::from_secs(15));

    replica.kill().unwrap();
    lab.node(0).kill().unwrap();
    // One page: the slot alerts are the same news and fold into it.
    let got = hook.wait_for(Duration::from_secs(40), |r| !pages(r, "cluster_state_fail").is_empty());
    let page = pages(&got, "cluster_state_fail")[0];
    assert_eq!(page.body["target"], "c1");
    let summary = page.body["summary"].as_str().unwrap();
    assert!(
        summary.contains("5461 slots have no master"),
        "{summary}\n{}",
        hook.describe()
    );
    let folded = harness::wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        redops
            .output()
            .lines()
            .any(|l| l.contains("Alert folded into an incident") && l.contains("rule=cluster_slots_not_ok"))
    });
    assert!(folded, "{}\n{}", hook.describe(), redops.output());

    lab.node(0).restart().unwrap();
    replica.restart().unwrap();
    let got = hook.wait_for(Duration::from_secs(60), |r| {
        !alerts(r, "cluster_state_fail", "resolved").is_empty()
    });
    let resolved = alerts(&got, "cluster_state_fail", "resolved")[0];
    let explained: Vec<&str> = resolved.body["folded"]
        .as_array()
        .map(|f| f.iter().filter_map(|a| a["rule"].as_str()).collect())
        .unwrap_or_default();
    assert!(explained.contains(&"cluster_slots_not_ok"), "{}", hook.describe());
    assert_eq!(pages(&got, "cluster_state_fail").len(), 1, "{}", hook.describe());
    assert!(pages(&got, "cluster_slots_not_ok").is_empty(), "{}", hook.describe());
    assert!(!redops.output().contains("panicked"));
}

#[test]
fn a_keyspace_rule_on_the_cluster_counts_the_events_of_every_master() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let hook = WebhookReceiver::start();
    const PER_MASTER: usize = 10;
    let total = 3 * PER_MASTER;
    let rule = format!(
        "[[rule]]\nname = \"sets\"\nsource = \"keyspace\"\nevents = [\"set\"]\nkeys = \"k:*\"\nwindow = \"5m\"\n\
         targets = [\"c1\"]\nwhen = \"count >= {total}\"\nseverity = \"info\"\nsummary = \"{{{{ count }}}} sets on {{{{ target }}}}\"\n"
    );
    let dir = engine_dir(
        "500ms",
        &cluster_config(&lab.node(1).addr(), &hook, "keyspace_events = \"E$\""),
        &[("sets", &rule)],
        &[],
    );
    let redops = Redops::start(dir.path(), &[]);
    let subscribed = harness::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        redops.output().matches("Keyspace subscription active").count() >= 3
    });
    assert!(subscribed, "{}", redops.output());
    let output = redops.output();
    for master in lab.initial_masters() {
        assert!(output.contains(&format!("target=c1/{}", master.addr())), "{output}");
    }

    for (i, range) in slot_ranges(3).into_iter().enumerate() {
        let tag = tag_in(range);
        let client = redis::Client::open(format!("redis://{}", lab.node(i).addr())).unwrap();
        let mut conn = client.get_connection().unwrap();
        for n in 0..PER_MASTER {
            let _: () = redis::cmd("SET")
                .arg(format!("k:{{{tag}}}:{n}"))
                .arg(n)
                .query(&mut conn)
                .unwrap();
        }
    }
    let got = hook.wait_for(Duration::from_secs(20), |r| !pages(r, "sets").is_empty());
    let alert = pages(&got, "sets")[0];
    assert_eq!(alert.body["target"], "c1");
    // Every master's sets, each once: a replica's copy is not counted.
    assert_eq!(
        alert.body["summary"],
        format!("{total} sets on c1"),
        "{}",
        hook.describe()
    );
}
