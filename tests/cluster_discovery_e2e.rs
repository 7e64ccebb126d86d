//! Discovery of a real Redis Cluster (three masters, three replicas, every
//! slot assigned) from one seed: every node, its role and slot ranges, and
//! the slot of a key as the server computes it; the cluster source
//! discovering again at once when a routed command is answered `MOVED`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redops::cluster::source::spawn_cluster_source;
use redops::cluster::{Discoverer, Role, key_slot};
use redops::config::{ClusterConfig, Config};
use redops::diagnostics::{Diagnostics, SourceFile};
use redops::event::Event;
use redops::lab::cluster::{ClusterLab, slot_ranges};
use redops::playbooks::cluster_route::ClusterRoute;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn config(seeds: Vec<String>) -> ClusterConfig {
    ClusterConfig {
        name: "c1".into(),
        seeds,
        username: None,
        password: None,
        tls: false,
        tls_ca: None,
        keyspace_events: None,
        labels: BTreeMap::new(),
        probes: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_seed_finds_every_node_with_its_role_and_slots() {
    let dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(dir.path(), 3, 1).unwrap();
    // The last replica as the only seed: discovery must not need a master.
    let seed = lab.nodes()[5].addr();
    let mut discoverer = Discoverer::new(config(vec![seed.clone()]), Duration::from_secs(2));
    let view = discoverer.discover().await.unwrap();
    assert_eq!(view.source, seed);
    assert!(view.info.state_ok, "{:?}", view.info);
    assert_eq!(view.info.known_nodes, 6);
    assert_eq!(view.info.size, 3);
    assert_eq!(view.info.slots_ok, 16384);
    assert_eq!(view.nodes.len(), 6, "{:?}", view.nodes);
    assert_eq!(view.uncovered_slots(), 0);

    let masters: Vec<String> = lab.initial_masters().iter().map(|m| m.addr()).collect();
    assert_eq!(view.masters(), masters.iter().map(String::as_str).collect::<Vec<_>>());
    for (i, (range, master)) in slot_ranges(3).into_iter().zip(&masters).enumerate() {
        let shard = &view.shards[i];
        assert_eq!(shard.slots, vec![range], "shard {i}");
        assert_eq!(shard.name, format!("{}-{}", range.0, range.1));
        assert_eq!(shard.master.as_ref(), Some(master));
        let replica = lab.replica_of(i, 0).unwrap().addr();
        assert_eq!(shard.replicas, vec![replica.clone()], "shard {i}");
        assert_eq!(view.node(&replica).unwrap().role, Role::Replica);
        assert_eq!(view.node(master).unwrap().role, Role::Master);
        assert!(view.node(master).unwrap().is_up());
    }

    let mut conn = redis::Client::open(format!("redis://{seed}"))
        .unwrap()
        .get_connection()
        .unwrap();
    for key in ["foo", "bar", "{user1000}.following", "session:42", "", "a{}b"] {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut conn).unwrap();
        assert_eq!(key_slot(key.as_bytes()), slot, "key {key:?}");
        let shard = view.shard_of_slot(slot).unwrap();
        assert!(shard.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_falls_back_to_known_nodes_when_the_seeds_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(dir.path(), 3, 1).unwrap();
    let seed = lab.nodes()[0].addr();
    let mut discoverer = Discoverer::new(config(vec![seed.clone()]), Duration::from_secs(2));
    discoverer.discover().await.unwrap();
    lab.nodes()[0].kill().unwrap();
    let view = discoverer.discover().await.unwrap();
    assert_ne!(view.source, seed);
    assert_eq!(view.unreachable.len(), 1, "{:?}", view.unreachable);
    assert_eq!(view.unreachable[0].0, seed);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_node_answering_is_an_error_naming_the_cluster_and_each_seed() {
    let port = redops::lab::process::free_port().unwrap();
    let seed = format!("127.0.0.1:{port}");
    let mut discoverer = Discoverer::new(config(vec![seed.clone()]), Duration::from_millis(500));
    let err = discoverer.discover().await.unwrap_err();
    assert!(err.contains("cluster `c1`") && err.contains(&seed), "{err}");
}

fn conn(addr: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

/// Takes events until a node's `slots` label satisfies `pred`; the labels
/// the source gave each node so far, by target.
async fn wait_for_slots(
    events: &mut mpsc::Receiver<Event>,
    labels: &mut BTreeMap<String, String>,
    timeout: Duration,
    pred: impl Fn(&BTreeMap<String, String>) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !pred(labels) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Target(change))) => {
                if let Some(slots) = change.labels.get("slots") {
                    labels.insert(change.target.clone(), slots.clone());
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_reply_to_a_routed_command_makes_the_source_discover_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(dir.path(), 3, 0).unwrap();
    let (from, to) = (lab.node(0).addr(), lab.node(1).addr());
    // A slot inside the first master's range, so both its neighbours stay.
    let key = (0..)
        .map(|i| format!("moved-{i}"))
        .find(|k| (100..5000).contains(&key_slot(k.as_bytes())))
        .unwrap();
    let slot = key_slot(key.as_bytes());

    // Sampling once an hour: only the redirect can make it discover again.
    let name = "c-moved";
    let text = format!(
        "[engine]\nsample_interval = \"1h\"\n\n[[cluster]]\nname = \"{name}\"\nseeds = [\"{}\"]\n",
        lab.node(2).addr()
    );
    let mut diags = Diagnostics::default();
    let config = Config::parse(&SourceFile::new("redops.toml", text.as_str()), &mut diags).expect("config");
    let cluster = config.clusters[0].clone();
    let (tx, mut events) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let source = spawn_cluster_source(cluster.clone(), Arc::new(config), Vec::new(), tx, shutdown.clone());
    let (from_target, to_target) = (format!("{name}/{from}"), format!("{name}/{to}"));
    let mut labels = BTreeMap::new();
    let first = wait_for_slots(&mut events, &mut labels, Duration::from_secs(10), |l| {
        l.get(&from_target).map(String::as_str) == Some("0-5460") && l.contains_key(&to_target)
    })
    .await;
    assert!(first, "never labelled: {labels:?}");

    // A playbook's route read the map before the slot moved.
    let mut route = ClusterRoute::new(cluster, None, None);
    route.view(Duration::from_secs(2)).unwrap();
    let id = |addr: &str| -> String { redis::cmd("CLUSTER").arg("MYID").query(&mut conn(addr)).unwrap() };
    let (from_id, to_id) = (id(&from), id(&to));
    let setslot = |addr: &str, args: &[&str]| {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(args)
            .query(&mut conn(addr))
            .unwrap();
    };
    setslot(&to, &["IMPORTING", &from_id]);
    setslot(&from, &["MIGRATING", &to_id]);
    // The slot holds no key: nothing to MIGRATE; hand it over everywhere.
    for addr in [&to, &from, &lab.node(2).addr()] {
        setslot(addr, &["NODE", &to_id]);
    }

    let args = vec!["SET".to_owned(), key.clone(), "v".to_owned()];
    let (reply, answered_by) = tokio::task::spawn_blocking(move || route.send(&args, None, Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(answered_by.as_deref(), Some(to.as_str()), "the MOVED was followed");

    let slot_text = slot.to_string();
    // Each node's labels come with its own sample: wait for both.
    let followed = wait_for_slots(&mut events, &mut labels, Duration::from_secs(5), |l| {
        l.get(&to_target).is_some_and(|s| s.split(',').any(|r| r == slot_text))
            && l.get(&from_target).is_some_and(|s| s != "0-5460")
    })
    .await;
    assert!(followed, "the source did not follow the moved slot {slot}: {labels:?}");
    shutdown.cancel();
    source.await.unwrap();
}
