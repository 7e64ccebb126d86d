//! `redops cluster status|validate`, `redops status`, `redops lab
//! --cluster`, `redops run --lab --cluster` and `redops backup list|cleanup`
//! of cluster sets end to end, on real `redis-server --cluster-enabled`
//! processes.

mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use harness::{REDOPS_BIN, WebhookReceiver, alerts, run_redops, wait_until};
use redops::lab::cluster::{ClusterLab, slot_ranges};
use redops::lab::topology::{LabState, pid_alive};
use serde_json::Value;

/// Longer than `cluster-node-timeout` (2 s) plus the gossip that turns a
/// pfail into a fail and the election, on a busy machine.
const CLUSTER_CHANGE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

fn describe(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn write_config(dir: &Path, lab: &ClusterLab) -> String {
    let seeds: Vec<String> = lab.addrs().iter().map(|a| format!("\"{a}\"")).collect();
    let path = dir.join("redops.toml");
    fs::write(
        &path,
        format!(
            "[engine]\nstate_dir = \"{}\"\nconnect_timeout = \"1s\"\n\n[[cluster]]\nname = \"c1\"\nseeds = [{}]\n",
            dir.join("state").display(),
            seeds.join(", ")
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("no JSON on stdout ({e}):\n{}", describe(output)))
}

#[test]
fn cluster_status_lists_shards_and_validate_names_what_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(&dir.path().join("lab"), 3, 1).unwrap();
    let config = write_config(dir.path(), &lab);

    let output = run_redops(&["cluster", "status", "--json", "--config", &config], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let clusters = json(&output);
    let view = &clusters[0]["view"];
    assert_eq!(clusters[0]["cluster"], "c1");
    assert_eq!(view["info"]["state_ok"], true);
    let shards = view["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3, "{view}");
    for (i, (first, last)) in slot_ranges(3).into_iter().enumerate() {
        assert_eq!(shards[i]["name"], format!("{first}-{last}"));
        assert_eq!(shards[i]["master"], lab.initial_masters()[i].addr(), "shard {i}");
        assert_eq!(
            shards[i]["replicas"],
            serde_json::json!([lab.replica_of(i, 0).unwrap().addr()]),
            "shard {i}"
        );
    }

    let output = run_redops(&["cluster", "validate", "--config", &config], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok: no problems found"));

    let output = run_redops(&["status", "--json", "--config", &config], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let status = json(&output);
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["clusters"][0]["cluster"], "c1");
    assert_eq!(status["clusters"][0]["status"], "ok");
    let output = run_redops(&["status", "--config", &config], &[]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("[OK] cluster c1  state=ok"),
        "{}",
        describe(&output)
    );

    // Shard 0 loses its only replica: its master is one crash from losing
    // a third of the keyspace.
    let replica = lab.replica_of(0, 0).unwrap();
    replica.kill().unwrap();
    let mut last = None;
    let named = wait_until(CLUSTER_CHANGE, POLL, || {
        let output = run_redops(&["cluster", "validate", "--config", &config], &[]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let found = output.status.code() == Some(1)
            && text.contains("shard 0-5460")
            && text.contains("without a replica")
            && text.contains(&replica.addr());
        last = Some(describe(&output));
        found
    });
    assert!(
        named,
        "validate never named the master without replica:\n{}",
        last.unwrap()
    );
    let output = run_redops(&["status", "--json", "--config", &config], &[]);
    assert_eq!(json(&output)["clusters"][0]["status"], "warning");

    // Shard 1 loses its master and its replica: its slots have no server.
    lab.initial_masters()[1].kill().unwrap();
    lab.replica_of(1, 0).unwrap().kill().unwrap();
    let named = wait_until(CLUSTER_CHANGE, POLL, || {
        let output = run_redops(&["cluster", "validate", "--config", &config], &[]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let found = output.status.code() == Some(1)
            && text.contains("cluster_state is fail")
            && text.contains("5461 slot(s) uncovered");
        last = Some(describe(&output));
        found
    });
    assert!(named, "validate never saw the uncovered slots:\n{}", last.unwrap());
    let output = run_redops(&["status", "--json", "--config", &config], &[]);
    assert_eq!(output.status.code(), Some(1), "a failed cluster is critical");
    assert_eq!(json(&output)["clusters"][0]["status"], "critical");
}

#[test]
fn cluster_commands_without_a_cluster_are_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redops.toml");
    fs::write(&path, "[engine]\nstate_dir = \"state\"\n").unwrap();
    let output = run_redops(&["cluster", "status", "--config", &path.to_string_lossy()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("has no [[cluster]]"),
        "{}",
        describe(&output)
    );
}

/// A cluster lab directory whose processes are stopped on drop.
struct LabDir {
    dir: tempfile::TempDir,
    pids: BTreeSet<u32>,
}

impl LabDir {
    fn run(&mut self, args: &[&str]) -> Output {
        let mut full = vec!["lab"];
        full.extend(args);
        let dir = self.dir.path().to_string_lossy().into_owned();
        full.extend(["--dir", &dir]);
        let output = run_redops(&full, &[]);
        if let Ok(Some(state)) = LabState::load(self.dir.path()) {
            self.pids.extend(state.nodes.iter().map(|n| n.pid));
        }
        output
    }

    fn ok(&mut self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "`lab {}` failed:\n{}",
            args.join(" "),
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn status(&mut self) -> (Value, bool) {
        let output = self.run(&["status", "--json"]);
        (json(&output), output.status.success())
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        let _ = run_redops(&["lab", "down", "--dir", &self.dir.path().to_string_lossy()], &[]);
        for pid in &self.pids {
            if pid_alive(*pid) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

#[test]
fn lab_up_cluster_fails_over_loses_a_node_and_comes_down() {
    let mut lab = LabDir {
        dir: tempfile::tempdir().unwrap(),
        pids: BTreeSet::new(),
    };
    let out = lab.ok(&["up", "--cluster"]);
    assert!(out.contains("Cluster state: ok"), "{out}");
    let config = fs::read_to_string(lab.dir.path().join("redops.toml")).unwrap();
    assert!(config.contains("[[cluster]]"), "{config}");
    assert!(lab.dir.path().join("rules/availability.toml").is_file());

    let (status, up) = lab.status();
    assert!(up, "{status}");
    assert_eq!(status["kind"], "cluster");
    assert_eq!(status["nodes"].as_array().unwrap().len(), 6, "{status}");
    assert_eq!(status["cluster_state_ok"], true);
    let masters_before = status["masters"].clone();
    assert_eq!(masters_before.as_array().unwrap().len(), 3, "{status}");

    // The config the lab wrote is one `redops cluster` reads.
    let config_path = lab.dir.path().join("redops.toml").to_string_lossy().into_owned();
    let output = run_redops(&["cluster", "validate", "--config", &config_path], &[]);
    assert!(output.status.success(), "{}", describe(&output));

    // A Sentinel incident on a cluster lab is refused, naming the lab kind.
    let output = lab.run(&["chaos", "failover"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("needs a sentinel lab"),
        "{}",
        describe(&output)
    );

    // The master of slot 0's shard dies; the cluster elects its replica.
    let out = lab.ok(&["chaos", "node-down"]);
    let original = masters_before[0].as_str().unwrap();
    assert!(out.contains(&format!("Killed the master {original}")), "{out}");
    let (status, up) = lab.status();
    assert!(!up, "one node is down: {status}");
    assert_eq!(status["cluster_state_ok"], true, "{status}");
    assert_ne!(
        status["masters"][0], masters_before[0],
        "its replica took over: {status}"
    );
    assert_eq!(status["masters"][1], masters_before[1], "{status}");
    let promoted = status["masters"][0].clone();

    // `lab up` restarts it from its nodes.conf: it rejoins as a replica.
    let out = lab.ok(&["up"]);
    assert!(out.contains("Restarted master-1"), "{out}");
    let (status, up) = lab.status();
    assert!(up, "{status}");
    assert_eq!(status["masters"][0], promoted, "{status}");

    // The rejoined node has to sync before it can take over, and the masters
    // voted for this shard a moment ago: the failover waits for the one and
    // asks again past the other.
    let out = lab.ok(&["chaos", "shard-failover"]);
    assert!(out.contains("Shard 0-5460 failed over"), "{out}");
    let (status, up) = lab.status();
    assert!(up, "{status}");
    assert_eq!(status["masters"][0], masters_before[0], "{status}");
    let out = lab.ok(&["chaos", "shard-failover"]);
    assert!(out.contains("Shard 0-5460 failed over"), "{out}");
    let (status, _) = lab.status();
    assert_eq!(status["masters"][0], promoted, "{status}");

    let pids = lab.pids.clone();
    let out = lab.ok(&["down"]);
    assert!(out.contains("6 processes"), "{out}");
    assert!(
        pids.iter().all(|pid| !pid_alive(*pid)),
        "a lab process survived `lab down`"
    );
    assert!(LabState::load(lab.dir.path()).unwrap().is_none());
}

#[test]
fn backup_list_shows_a_set_as_one_entry_and_cleanup_takes_sets_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lab = ClusterLab::start(&dir.path().join("lab"), 3, 0).unwrap();
    let config = write_config(dir.path(), &lab);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let output = run_redops(
            &[
                "backup", "create", "--target", "c1", "--type", "rdb", "--json", "--config", &config,
            ],
            &[],
        );
        assert!(output.status.success(), "{}", describe(&output));
        ids.push(json(&output)["id"].as_str().unwrap().to_owned());
    }
    let (older, newer) = (&ids[0], &ids[1]);

    let output = run_redops(&["backup", "list", "--json", "--config", &config], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let rows = json(&output);
    let rows = rows.as_array().unwrap();
    let listed: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        listed,
        [newer.as_str(), older.as_str()],
        "one row a set, no member alone"
    );
    let masters: BTreeSet<String> = lab.initial_masters().iter().map(|m| m.addr()).collect();
    let mut older_files = Vec::new();
    for row in rows {
        assert_eq!(row["kind"], "set");
        assert_eq!(row["target"], "c1");
        let members = row["members"].as_array().unwrap();
        let of: BTreeSet<String> = members
            .iter()
            .map(|m| m["master"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(of, masters, "{row}");
        for m in members {
            assert_eq!(m["backup"]["target"], format!("c1/{}", m["master"].as_str().unwrap()));
            let path = m["backup"]["path"].as_str().unwrap().to_owned();
            assert!(Path::new(&path).exists(), "{path}");
            if row["id"] == older.as_str() {
                older_files.push(path);
            }
        }
    }
    let output = run_redops(&["backup", "list", "--config", &config], &[]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.contains(&format!("set {older}  cluster c1")), "{text}");
    assert!(!text.contains("no backups"), "{text}");

    // Both sets are past a zero-day retention; the newest of the cluster stays.
    let output = run_redops(
        &[
            "backup",
            "cleanup",
            "--retention-days",
            "0",
            "--json",
            "--config",
            &config,
        ],
        &[],
    );
    assert!(output.status.success(), "{}", describe(&output));
    let report = json(&output);
    assert_eq!(report["removed"], serde_json::json!([]), "{report}");
    assert_eq!(report["removed_sets"][0]["id"], older.as_str(), "{report}");
    assert_eq!(report["removed_sets"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["kept_newest_sets"][0]["id"], newer.as_str(), "{report}");
    assert_eq!(older_files.len(), 3);
    for path in &older_files {
        assert!(!Path::new(path).exists(), "{path} left behind");
    }
    let output = run_redops(&["backup", "list", "--json", "--config", &config], &[]);
    let rows = json(&output);
    let listed: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [newer.as_str()]);
    let output = run_redops(&["backup", "verify", "--backup-id", newer, "--config", &config], &[]);
    assert!(output.status.success(), "the kept set is whole: {}", describe(&output));
}

/// `redops run --lab --cluster` as a child, killed on drop.
struct Engine {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Engine {
    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn run_lab_cluster_pages_the_failover_of_a_chaos_node_down() {
    let mut lab = LabDir {
        dir: tempfile::tempdir().unwrap(),
        pids: BTreeSet::new(),
    };
    let hook = WebhookReceiver::start();
    let api = format!("127.0.0.1:{}", redops::lab::process::free_port().unwrap());
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("redops.log");
    let file = fs::File::create(&log).unwrap();
    let lab_dir = lab.dir.path().to_string_lossy().into_owned();
    let child = Command::new(REDOPS_BIN)
        .args(["run", "--lab", "--cluster", "--lab-dir", &lab_dir])
        .env("REDOPS_WEBHOOK_URL", hook.url())
        .env("REDOPS_LAB_API_LISTEN", &api)
        .env("RUST_LOG", "redops=info")
        .env("NO_COLOR", "1")
        .current_dir(log_dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let engine = Engine { child, log };
    // The lab comes up first, then the engine serves on the address asked.
    let serving = wait_until(Duration::from_secs(120), POLL, || {
        reqwest::blocking::get(format!("http://{api}/health")).is_ok_and(|r| r.status().is_success())
    });
    assert!(serving, "the engine never served on {api}:\n{}", engine.output());
    let (status, up) = lab.status();
    assert!(up, "{status}");
    let followed = wait_until(Duration::from_secs(30), POLL, || {
        engine.output().matches("Following node").count() >= 6
    });
    assert!(followed, "{}", engine.output());

    let out = lab.ok(&["chaos", "node-down"]);
    assert!(out.contains("Killed the master"), "{out}");
    let got = hook.wait_for(CLUSTER_CHANGE, |r| !alerts(r, "cluster_failover", "firing").is_empty());
    let page = alerts(&got, "cluster_failover", "firing")[0];
    assert_eq!(page.body["labels"]["cluster"], "lab", "{}", hook.describe());
    assert_eq!(page.body["labels"]["role"], "master", "{}", hook.describe());
}
