//! Discovery of a real Redis Cluster (three masters, three replicas, every
//! slot assigned) from one seed: every node, its role and slot ranges, and
//! the slot of a key as the server computes it.

use std::collections::BTreeMap;
use std::time::Duration;

use redops::cluster::{Discoverer, Role, key_slot};
use redops::config::ClusterConfig;
use redops::lab::cluster::{ClusterLab, slot_ranges};

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
