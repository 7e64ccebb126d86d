//! Playbooks against a real Redis Cluster (three masters, three replicas),
//! through `redops playbook run`: the `cluster.*` API sees every node with
//! its role and shard, `redis.cmd` lands each key on the master serving its
//! slot and follows a MOVED, the CLUSTER subcommands that change topology
//! are denied and leave the cluster as it was, and the shipped
//! `cluster_failover` playbook passes after a master is killed and its
//! replica promoted. Backup sets: one RDB per master, verified member by
//! member, refused onto a cluster whose slots are split otherwise.

mod harness;

use std::path::Path;
use std::time::Duration;

use harness::{engine_dir, run_redops, wait_until};
use redops::cluster::key_slot;
use redops::lab::cluster::ClusterLab;

fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks")
        .join(format!("{name}.rhai"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("Failed to read {}: {e}", path.display()))
}

/// Every node a seed, as an operator would list them: a test that kills a
/// node must not lose the only way in.
fn cluster_config(name: &str, lab: &ClusterLab, extra: &str) -> String {
    let seeds: Vec<String> = lab.addrs().iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[cluster]]\nname = \"{name}\"\nseeds = [{}]\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\n{extra}\n",
        seeds.join(", ")
    )
}

fn redops(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let config = dir.join("redops.toml");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().expect("a UTF-8 path")]);
    let out = run_redops(&all, &[]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a playbook by hand; its exit code and its record as JSON.
fn playbook_run(dir: &Path, name: &str, target: &str) -> (Option<i32>, serde_json::Value, String) {
    let (code, stdout, stderr) = redops(dir, &["playbook", "run", name, "--target", target, "--json"]);
    let described = format!("exit {code:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let record = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a JSON record ({e}):\n{described}"));
    (code, record, described)
}

fn findings(record: &serde_json::Value) -> Vec<String> {
    record["findings"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

fn audit(record: &serde_json::Value) -> Vec<String> {
    record["audit"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} -> {}",
                        e["detail"].as_str().unwrap_or_default(),
                        e["outcome"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn conn(addr: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// The master of the lab serving `key`'s slot, asked of the server itself.
fn master_of(lab: &ClusterLab, key: &str) -> String {
    let mut c = conn(&lab.nodes()[0].addr());
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut c).unwrap();
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
    for range in slots {
        let redis::Value::Array(parts) = range else { continue };
        let (redis::Value::Int(a), redis::Value::Int(b)) = (&parts[0], &parts[1]) else {
            continue;
        };
        if (*a..=*b).contains(&i64::from(slot)) {
            let redis::Value::Array(node) = &parts[2] else { break };
            let host: String = redis::from_redis_value(node[0].clone()).unwrap();
            let port: i64 = redis::from_redis_value(node[1].clone()).unwrap();
            return format!("{host}:{port}");
        }
    }
    panic!("no master serves slot {slot}");
}

const PROBE: &str = r#"
let nodes = cluster.nodes();
log.info(`nodes ${nodes.len()}`);
for n in nodes { log.info(`node ${n.addr} ${n.role} ${n.shard} ${n.up}`); }
for k in ["foo", "bar", "{user1000}.following", "session:42"] {
    let s = cluster.shard_of(k);
    log.info(`key ${k} ${s.slot} ${s.master} ${s.shard}`);
}
for i in 0..30 { redis.cmd(["SET", `k${i}`, `v${i}`]); }
for i in 0..30 {
    let back = redis.cmd(["GET", `k${i}`]);
    if back != `v${i}` { throw `k${i} read back ${back}`; }
}
// Sent to the wrong master on purpose: the MOVED is followed.
let right = cluster.shard_of("moved-key").master;
let wrong = cluster.masters().filter(|m| m.addr != right)[0].addr;
redis.cmd_on(wrong, ["SET", "moved-key", "x"]);
let err = "";
try { redis.cmd(["DBSIZE"]); } catch (e) { err = e; }
log.info(`keyless: ${err}`);
log.info(`dbsize ${redis.cmd_on(cluster.masters()[0].addr, ["DBSIZE"])}`);
"#;

#[test]
fn the_host_api_sees_the_cluster_and_routes_each_key_to_its_master() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let dir = engine_dir("1s", &cluster_config("c1", &lab, ""), &[], &[("probe", PROBE)]);
    let (code, record, described) = playbook_run(dir.path(), "probe", "c1");
    assert_eq!(code, Some(0), "{described}");
    let found = findings(&record);

    assert!(found.contains(&"nodes 6".to_owned()), "{found:?}");
    for (i, master) in lab.initial_masters().iter().enumerate() {
        let replica = lab.replica_of(i, 0).unwrap().addr();
        let master_line = found
            .iter()
            .find(|f| f.starts_with(&format!("node {} ", master.addr())));
        let replica_line = found.iter().find(|f| f.starts_with(&format!("node {replica} ")));
        let (m, r) = (
            master_line.expect("master listed"),
            replica_line.expect("replica listed"),
        );
        assert!(m.contains(" master ") && m.ends_with(" true"), "{m}");
        assert!(r.contains(" replica ") && r.ends_with(" true"), "{r}");
        // Both name the same shard.
        assert_eq!(m.split(' ').nth(3), r.split(' ').nth(3), "{m} / {r}");
    }

    let mut c = conn(&lab.nodes()[0].addr());
    for key in ["foo", "bar", "{user1000}.following", "session:42"] {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut c).unwrap();
        let line = found
            .iter()
            .find(|f| f.starts_with(&format!("key {key} ")))
            .unwrap_or_else(|| panic!("{key} not reported: {found:?}"));
        let parts: Vec<&str> = line.rsplitn(4, ' ').collect();
        assert_eq!(parts[2], slot.to_string(), "{line}");
        assert_eq!(parts[1], master_of(&lab, key), "{line}");
    }

    // Every key is on the master serving its slot, read without redops.
    let mut shards_hit = std::collections::BTreeSet::new();
    for i in 0..30 {
        let key = format!("k{i}");
        let master = master_of(&lab, &key);
        let value: Option<String> = redis::cmd("GET").arg(&key).query(&mut conn(&master)).unwrap();
        assert_eq!(value.as_deref(), Some(format!("v{i}").as_str()), "{key} on {master}");
        shards_hit.insert(master);
    }
    assert_eq!(shards_hit.len(), 3, "the keys span every shard");

    // The audit names the node each write ran on; the MOVED landed on the right one.
    let trail = audit(&record);
    let k0 = format!("SET k0 v0 (on {}) -> ok", master_of(&lab, "k0"));
    assert!(trail.contains(&k0), "{trail:#?}");
    let moved = format!("SET moved-key x (on {}) -> ok", master_of(&lab, "moved-key"));
    assert!(trail.contains(&moved), "{trail:#?}");
    let value: Option<String> = redis::cmd("GET")
        .arg("moved-key")
        .query(&mut conn(&master_of(&lab, "moved-key")))
        .unwrap();
    assert_eq!(value.as_deref(), Some("x"));

    let keyless = found.iter().find(|f| f.starts_with("keyless: ")).unwrap();
    assert!(keyless.contains("redis.cmd_on"), "{keyless}");
    assert!(found.iter().any(|f| f.starts_with("dbsize ")), "{found:?}");

    // A node's target (a node's alert): keyless commands go to that node,
    // keyed ones still to their slot's master.
    let replica = lab.replica_of(1, 0).unwrap().addr();
    let node_probe = "log.info(`myid ${redis.cmd([\"CLUSTER\", \"MYID\"])}`); redis.cmd([\"SET\", \"k0\", \"again\"]);";
    std::fs::write(dir.path().join("playbooks/node_probe.rhai"), node_probe).unwrap();
    let (code, record, described) = playbook_run(dir.path(), "node_probe", &format!("c1/{replica}"));
    assert_eq!(code, Some(0), "{described}");
    let replica_id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut conn(&replica)).unwrap();
    assert_eq!(findings(&record), vec![format!("myid {replica_id}")], "{described}");
    let k0 = format!("SET k0 again (on {}) -> ok", master_of(&lab, "k0"));
    assert!(audit(&record).contains(&k0), "{described}");
}

const DENIALS: &str = r#"
let node = cluster.masters()[0].addr;
let other = cluster.nodes().filter(|n| n.addr != node)[0];
let forms = [
    ["CLUSTER", "FAILOVER", "FORCE"],
    ["CLUSTER", "RESET", "HARD"],
    ["CLUSTER", "FORGET", other.id],
    ["CLUSTER", "ADDSLOTS", "1"],
    ["CLUSTER", "ADDSLOTSRANGE", "1", "2"],
    ["CLUSTER", "DELSLOTS", "1"],
    ["CLUSTER", "DELSLOTSRANGE", "0", "100"],
    ["CLUSTER", "SETSLOT", "1", "NODE", other.id],
    ["CLUSTER", "MEET", "127.0.0.1", "1"],
    ["CLUSTER", "FLUSHSLOTS"],
    ["CLUSTER", "REPLICATE", other.id],
];
for f in forms {
    try {
        redis.cmd_on(node, f);
        log.info(`ALLOWED ${f}`);
    } catch (e) {
        log.info(`denied: ${e}`);
    }
}
for sub in ["INFO", "NODES", "SHARDS", "SLOTS", "MYID", "LINKS"] {
    redis.cmd_on(node, ["CLUSTER", sub]);
    log.info(`read ${sub}`);
}
log.info(`keyslot ${redis.cmd_on(node, ["CLUSTER", "KEYSLOT", "foo"])}`);
"#;

/// What a denial must not have changed: every node's id, role, master and
/// slots, as each node sees the cluster, and the epoch.
fn topology(lab: &ClusterLab) -> Vec<String> {
    lab.nodes()
        .iter()
        .map(|n| {
            let mut c = conn(&n.addr());
            let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).unwrap();
            let mut lines: Vec<String> = nodes
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    let flags = f[2].replace("myself,", "");
                    format!("{} {} {} {}", f[0], flags, f[3], f[8..].join(" "))
                })
                .collect();
            lines.sort();
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
            let epoch = info
                .lines()
                .find(|l| l.starts_with("cluster_current_epoch"))
                .unwrap()
                .trim()
                .to_owned();
            format!("{}\n{epoch}", lines.join("\n"))
        })
        .collect()
}

#[test]
fn cluster_topology_changes_are_denied_and_the_cluster_is_unchanged() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let before = topology(&lab);
    let dir = engine_dir("1s", &cluster_config("c1", &lab, ""), &[], &[("denials", DENIALS)]);
    let (code, record, described) = playbook_run(dir.path(), "denials", "c1");
    assert_eq!(code, Some(0), "{described}");
    let found = findings(&record);
    assert!(!found.iter().any(|f| f.starts_with("ALLOWED")), "{found:#?}");
    for sub in [
        "FAILOVER",
        "RESET",
        "FORGET",
        "ADDSLOTS",
        "ADDSLOTSRANGE",
        "DELSLOTS",
        "DELSLOTSRANGE",
        "SETSLOT",
        "MEET",
        "FLUSHSLOTS",
        "REPLICATE",
    ] {
        let expected = format!("denied: `CLUSTER {sub}` is denied by the playbook command policy");
        assert!(
            found.iter().any(|f| f.starts_with(&expected)),
            "no denial of CLUSTER {sub}: {found:#?}"
        );
    }
    let denied_in_audit = audit(&record).iter().filter(|a| a.contains("-> denied: ")).count();
    assert_eq!(denied_in_audit, 11, "{:#?}", audit(&record));
    for sub in ["INFO", "NODES", "SHARDS", "SLOTS", "MYID", "LINKS"] {
        assert!(found.contains(&format!("read {sub}")), "{found:#?}");
    }
    assert!(found.contains(&"keyslot 12182".to_owned()), "{found:#?}");
    assert_eq!(topology(&lab), before, "a denied command changed the cluster");
}

#[test]
fn the_shipped_cluster_failover_playbook_passes_after_a_master_is_replaced() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let dir = engine_dir(
        "1s",
        &cluster_config("c1", &lab, ""),
        &[],
        &[("cluster_failover", &shipped("cluster_failover"))],
    );
    let (code, out, err) = redops(dir.path(), &["check"]);
    assert_eq!(code, Some(0), "redops check:\n{out}\n{err}");

    let old = lab.initial_masters()[0].addr();
    let promoted = lab.replica_of(0, 0).unwrap().addr();
    lab.initial_masters()[0].kill().unwrap();
    let promoted_is_master = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        redis::cmd("ROLE")
            .query::<Vec<redis::Value>>(&mut conn(&promoted))
            .ok()
            .and_then(|r| redis::from_redis_value::<String>(r[0].clone()).ok())
            .is_some_and(|role| role == "master")
    });
    assert!(promoted_is_master, "the replica {promoted} was not promoted");
    assert!(
        lab.wait_state_ok(Duration::from_secs(30)).is_ok(),
        "the cluster did not come back to cluster_state:ok"
    );

    let (code, record, described) = playbook_run(dir.path(), "cluster_failover", "c1");
    assert_eq!(code, Some(0), "{described}");
    let found = findings(&record);
    assert!(
        found.contains(&"every shard of 3 has a master up".to_owned()),
        "{found:#?}"
    );
    assert!(
        found.contains(&"test write and read succeeded on 3 master(s)".to_owned()),
        "{found:#?}"
    );
    let trail = audit(&record);
    // The write of the first shard went to the promoted replica, not the dead master.
    assert!(
        trail
            .iter()
            .any(|a| a.starts_with("SET redops:failover-check:") && a.contains(&format!("(on {promoted})"))),
        "{trail:#?}"
    );
    assert!(!trail.iter().any(|a| a.contains(&format!("(on {old})"))), "{trail:#?}");
    assert!(
        trail
            .iter()
            .any(|a| a.starts_with("notify hook: ") && a.contains("checks passed")),
        "the outcome is notified: {trail:#?}"
    );
}

/// Writes `n` keys, each straight to the master serving its slot.
fn load(lab: &ClusterLab, n: usize) {
    let masters = lab.initial_masters();
    let ranges = redops::lab::cluster::slot_ranges(masters.len());
    let mut conns: Vec<redis::Connection> = masters.iter().map(|m| conn(&m.addr())).collect();
    let mut pipes: Vec<redis::Pipeline> = (0..masters.len()).map(|_| redis::pipe()).collect();
    for i in 0..n {
        let key = format!("user:{i}");
        let slot = key_slot(key.as_bytes());
        let shard = ranges.iter().position(|(a, b)| (*a..=*b).contains(&slot)).unwrap();
        pipes[shard].cmd("SET").arg(&key).arg(format!("value-{i}")).ignore();
    }
    for (pipe, c) in pipes.iter().zip(conns.iter_mut()) {
        pipe.query::<()>(c).unwrap();
    }
}

#[test]
fn a_cluster_backup_set_verifies_per_master_and_is_refused_onto_another_layout() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = ClusterLab::start(other_dir.path(), 2, 0).unwrap();
    load(&lab, 10_000);
    let extra = format!(
        "[[cluster]]\nname = \"c2\"\nseeds = [\"{}\"]\n",
        other.nodes()[0].addr()
    );
    let dir = engine_dir(
        "1s",
        &cluster_config("c1", &lab, &extra),
        &[],
        &[(
            "set",
            "let s = backup.create(); log.info(`set ${s.id} ${s.members.len()}`); log.info(`verify ${backup.verify(s.id).ok}`);",
        )],
    );

    let (code, stdout, stderr) = redops(
        dir.path(),
        &["backup", "create", "--target", "c1", "--type", "rdb", "--json"],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let set: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let id = set["id"].as_str().unwrap().to_owned();
    let three = redops::lab::cluster::slot_ranges(3);
    let two = redops::lab::cluster::slot_ranges(2);
    let show = |ranges: &[(u16, u16)]| {
        ranges
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    assert_eq!(set["layout"], show(&three));
    let members = set["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let masters: Vec<String> = lab.initial_masters().iter().map(|m| m.addr()).collect();
    for (m, addr) in members.iter().zip(&masters) {
        assert_eq!(m["master"].as_str(), Some(addr.as_str()), "{m}");
    }

    let (code, stdout, stderr) = redops(dir.path(), &["backup", "verify", "--backup-id", &id]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("verified: 3 member(s)"), "{stdout}");
    assert_eq!(
        stdout.matches("CRC-64").count(),
        3,
        "each member's checksum checked: {stdout}"
    );

    // The members' RDBs hold every key between them.
    let (code, stdout, _) = redops(dir.path(), &["backup", "list", "--json"]);
    assert_eq!(code, Some(0));
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // One entry for the set, its members inside it.
    let set_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{rows:#}"));
    assert_eq!(set_row["kind"], "set", "{rows:#}");
    let member_rows = set_row["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["backup"]["target"].as_str().is_some_and(|t| t.starts_with("c1/")))
        .count();
    assert_eq!(member_rows, 3, "{rows:#}");

    // A cluster split in two cannot take a three-shard set.
    let (code, _, stderr) = redops(
        dir.path(),
        &["restore", "--backup-id", &id, "--target", "c2", "--confirm"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("slot layout differs"), "{stderr}");
    assert!(stderr.contains(&show(&three)), "{stderr}");
    assert!(stderr.contains(&show(&two)), "{stderr}");
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut conn(&other.nodes()[0].addr())).unwrap();
    assert_eq!(dbsize, 0, "nothing was written to the refused cluster");

    // Onto the same layout: the steps, shard by shard.
    let (code, _, stderr) = redops(
        dir.path(),
        &["restore", "--backup-id", &id, "--target", "c1", "--confirm"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("matches the slot layout"), "{stderr}");
    for m in members {
        assert!(stderr.contains(m["backup"].as_str().unwrap()), "{stderr}");
    }

    // The playbook API makes a set on a cluster target too.
    let (code, record, described) = playbook_run(dir.path(), "set", "c1");
    assert_eq!(code, Some(0), "{described}");
    let found = findings(&record);
    assert!(
        found.iter().any(|f| f.starts_with("set c1-set-") && f.ends_with(" 3")),
        "{found:#?}"
    );
    assert!(found.contains(&"verify true".to_owned()), "{found:#?}");
}

#[test]
fn a_key_of_a_migrating_slot_follows_the_ask_redirect() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(lab_dir.path(), 3, 1).unwrap();
    let key = "ask-key";
    let source = master_of(&lab, key);
    let dest = lab
        .initial_masters()
        .iter()
        .map(|m| m.addr())
        .find(|a| *a != source)
        .unwrap();
    let id = |addr: &str| -> String { redis::cmd("CLUSTER").arg("MYID").query(&mut conn(addr)).unwrap() };
    let slot = key_slot(key.as_bytes());
    // The slot is half way to `dest`: `source` answers ASK for a key it lacks.
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(id(&source))
        .query(&mut conn(&dest))
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(id(&dest))
        .query(&mut conn(&source))
        .unwrap();
    let playbook = format!("redis.cmd([\"SET\", \"{key}\", \"y\"]); redis.cmd([\"GET\", \"{key}\"])");
    let dir = engine_dir("1s", &cluster_config("c1", &lab, ""), &[], &[("ask", &playbook)]);
    let (code, record, described) = playbook_run(dir.path(), "ask", "c1");
    assert_eq!(code, Some(0), "{described}");
    assert_eq!(record["outcome"]["result"], "y", "{described}");
    let trail = audit(&record);
    assert!(trail.contains(&format!("SET {key} y (on {dest}) -> ok")), "{trail:#?}");
    let (_, value): ((), Option<String>) = redis::pipe()
        .cmd("ASKING")
        .cmd("GET")
        .arg(key)
        .query(&mut conn(&dest))
        .unwrap();
    assert_eq!(value.as_deref(), Some("y"), "the key was written where ASK sent it");
    // The source still lacks it, so it still sends the client on.
    let err = redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut conn(&source))
        .unwrap_err();
    assert_eq!(err.redirect_node(), Some((dest.as_str(), slot)), "{err}");
}
