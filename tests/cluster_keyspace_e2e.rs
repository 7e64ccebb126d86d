//! Keyspace rules on a real Redis Cluster (three masters, three replicas):
//! the evictions of every master add up to exactly what the masters
//! report, and a master's lost subscription pages as a plain target's does.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{Received, Redops, WebhookReceiver, alerts, engine_dir, wait_until};
use redops::cluster::key_slot;
use redops::lab::cluster::{ClusterLab, slot_ranges};

/// What users get: the rules that page on redops's own losses.
const SHIPPED: &str = include_str!("../rules/redops.toml");

fn cluster_config(seed: &str, hook: &WebhookReceiver, extra: &str) -> String {
    format!(
        "[[cluster]]\nname = \"c1\"\nseeds = [\"{seed}\"]\n{extra}\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url()
    )
}

fn conn(addr: &str) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    client.get_connection_with_timeout(Duration::from_secs(5)).unwrap()
}

fn info_u64(conn: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
}

fn pages<'a>(received: &'a [Received], rule: &str) -> Vec<&'a Received> {
    alerts(received, rule, "firing")
}

#[test]
fn a_keyspace_rule_counts_the_evictions_of_every_master_exactly() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let hook = WebhookReceiver::start();
    // Fires once the evictions passed 300 and held for 5 s: the writes
    // (pipelined, well under a second) are over by then and every master's
    // reader has reported its final count (at least once a second), so the
    // summary quotes the whole sum, not the count that crossed.
    let rule = "[[rule]]\nname = \"evictions\"\nsource = \"keyspace\"\nevents = [\"evicted\"]\nkeys = \"ev:*\"\n\
                window = \"10m\"\ntargets = [\"c1\"]\nwhen = \"count >= 300\"\nfor = \"5s\"\nseverity = \"info\"\n\
                summary = \"{{ count }} evictions on {{ target }}\"\n";
    let dir = engine_dir(
        "500ms",
        &cluster_config(&lab.node(1).addr(), &hook, "keyspace_events = \"Ee\""),
        &[("evictions", rule)],
        &[],
    );
    let redops = Redops::start(dir.path(), &[]);
    let subscribed = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        redops.output().matches("Keyspace subscription active").count() >= 3
    });
    assert!(subscribed, "{}", redops.output());

    // A small budget over what each master holds now, evicted at random.
    let masters: Vec<String> = lab.initial_masters().iter().map(|m| m.addr()).collect();
    let mut conns: Vec<redis::Connection> = masters.iter().map(|a| conn(a)).collect();
    for c in &mut conns {
        let used = info_u64(c, "memory", "used_memory");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used + 512 * 1024)
            .arg("maxmemory-policy")
            .arg("allkeys-random")
            .query(c)
            .unwrap();
        assert_eq!(info_u64(c, "stats", "evicted_keys"), 0);
    }
    // Keys of every slot, each sent to the master that serves it, until
    // every master evicted at least 150.
    let ranges = slot_ranges(3);
    let value = "v".repeat(1024);
    let evicted = |conns: &mut [redis::Connection]| -> Vec<u64> {
        conns.iter_mut().map(|c| info_u64(c, "stats", "evicted_keys")).collect()
    };
    let mut i = 0u64;
    while evicted(&mut conns).iter().any(|n| *n < 150) {
        let mut pipes: Vec<redis::Pipeline> = (0..3).map(|_| redis::pipe()).collect();
        for _ in 0..300 {
            let key = format!("ev:{i}");
            let slot = key_slot(key.as_bytes());
            let shard = ranges.iter().position(|r| (r.0..=r.1).contains(&slot)).unwrap();
            pipes[shard].cmd("SET").arg(&key).arg(&value).ignore();
            i += 1;
        }
        for (pipe, c) in pipes.iter().zip(conns.iter_mut()) {
            pipe.query::<()>(c).unwrap();
        }
        assert!(i < 200_000, "the masters never evicted: {:?}", evicted(&mut conns));
    }
    // Evicting goes on for a moment after the writes (the notifications
    // themselves take memory): lift the limit, so nothing more is evicted.
    for c in &mut conns {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(0)
            .query(c)
            .unwrap();
    }
    let per_master = evicted(&mut conns);
    let total: u64 = per_master.iter().sum();

    let got = hook.wait_for(Duration::from_secs(20), |r| !pages(r, "evictions").is_empty());
    let alert = pages(&got, "evictions")[0];
    assert_eq!(alert.body["target"], "c1");
    // Nothing evicted since: the count the rule saw is the masters' sum.
    assert_eq!(evicted(&mut conns), per_master, "evictions went on after the writes");
    let by_master: BTreeMap<_, _> = masters.iter().zip(&per_master).collect();
    assert_eq!(
        alert.body["summary"],
        format!("{total} evictions on c1"),
        "per master {by_master:?}; {}",
        hook.describe()
    );
}

#[test]
fn a_masters_lost_subscription_pages_on_that_master() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let hook = WebhookReceiver::start();
    let rule = "[[rule]]\nname = \"sets\"\nsource = \"keyspace\"\nevents = [\"set\"]\nkeys = \"*\"\nwindow = \"1m\"\n\
                targets = [\"c1\"]\nwhen = \"count > 1000000\"\nseverity = \"info\"\n";
    let dir = engine_dir(
        "200ms",
        &cluster_config(&lab.node(1).addr(), &hook, "keyspace_events = \"E$\""),
        &[("redops", SHIPPED), ("sets", rule)],
        &[],
    );
    let mut redops = Redops::start(dir.path(), &[]);
    let subscribed = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        redops.output().matches("Keyspace subscription active").count() >= 3
    });
    assert!(subscribed, "{}", redops.output());

    let master = lab.node(0);
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut conn(&master.addr()))
        .unwrap();
    assert_eq!(killed, 1, "exactly redops's subscriber is a pubsub client");
    redops.wait_log("Keyspace subscription lost", Duration::from_secs(5));

    let target = format!("c1/{}", master.addr());
    redops.wait_log(
        &format!("Alert changed rule=keyspace_subscriber_disconnected target=\"{target}\" status=Firing"),
        Duration::from_secs(10),
    );
    // The default `[[incident]]` of `cluster_failover` holds a node's lost
    // subscription 45 s for a failover that would explain it; none comes.
    let got = hook.wait_for(Duration::from_secs(60), |r| {
        !pages(r, "keyspace_subscriber_disconnected").is_empty()
    });
    let paged = pages(&got, "keyspace_subscriber_disconnected");
    assert_eq!(paged[0].body["target"], target.as_str(), "{}", hook.describe());
    assert!(
        paged[0].body["summary"]
            .as_str()
            .unwrap()
            .ends_with("(disconnects since start: 1)"),
        "{}",
        paged[0].body
    );
    // The other masters lost nothing and page nothing.
    assert!(
        paged.iter().all(|p| p.body["target"] == target.as_str()),
        "{}",
        hook.describe()
    );
    redops.wait_log("reconnect=true", Duration::from_secs(10));
    assert!(redops.terminate().success(), "{}", redops.output());
}
