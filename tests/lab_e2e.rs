//! `redops lab` end to end, on real redis-server and Sentinel processes.

mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::{REDOPS_BIN, run_redops, wait_until};
use redops::lab::topology::{self, LabState, Topology, pid_alive};
use serde_json::Value;

/// A lab directory whose processes are stopped on drop, with `redops lab
/// down` and then SIGKILL for any survivor, so a failing test leaves nothing
/// running.
struct Lab {
    root: tempfile::TempDir,
    /// `root` itself, or `root/state/lab` for a lab in a project directory.
    dir: PathBuf,
    pids: BTreeSet<u32>,
}

impl Lab {
    fn new() -> Lab {
        let root = tempfile::tempdir().expect("Failed to create a temp dir");
        let dir = root.path().to_path_buf();
        Lab {
            root,
            dir,
            pids: BTreeSet::new(),
        }
    }

    /// A lab where `redops lab up` puts it when run in `project()` with no
    /// `--dir`: `state/lab`, as a user who just cloned the repository gets.
    fn in_project() -> Lab {
        let root = tempfile::tempdir().expect("Failed to create a temp dir");
        let dir = root.path().join(topology::DEFAULT_LAB_DIR);
        Lab {
            root,
            dir,
            pids: BTreeSet::new(),
        }
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn project(&self) -> &Path {
        self.root.path()
    }

    fn run(&mut self, args: &[&str]) -> Output {
        let dir = self.path().to_str().expect("temp dirs are UTF-8").to_string();
        let mut args = args.to_vec();
        args.extend(["--dir", &dir]);
        let mut full = vec!["lab"];
        full.extend(args);
        let output = run_redops(&full, &[]);
        self.remember_pids();
        output
    }

    /// `redops <args>` in the project directory, as a user types it: no
    /// `--config`, and none of the caller's REDOPS_* variables.
    fn redops(&mut self, args: &[&str]) -> Output {
        let output = redops_in(self.project(), args, &[]);
        self.remember_pids();
        output
    }

    /// Runs `redops lab <args>`, asserts it succeeded and returns its stdout.
    fn ok(&mut self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "`redops lab {}` failed ({}):\n{}",
            args.join(" "),
            output.status,
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `lab status --json`, and whether it exited 0.
    fn status(&mut self) -> (Value, bool) {
        let output = self.run(&["status", "--json"]);
        let status = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("`lab status --json` printed no JSON ({e}):\n{}", describe(&output)));
        (status, output.status.success())
    }

    fn remember_pids(&mut self) {
        if let Ok(Some(state)) = LabState::load(self.path()) {
            self.pids.extend(state.nodes.iter().map(|n| n.pid));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.remember_pids();
        let _ = run_redops(&["lab", "down", "--dir", &self.path().to_string_lossy()], &[]);
        for pid in &self.pids {
            if pid_alive(*pid) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// `redops <args>` with `cwd` as the working directory and `env` the only
/// REDOPS_* variables, so a lab or config of the machine running the tests
/// cannot leak in.
fn redops_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(REDOPS_BIN);
    command.args(args).current_dir(cwd).env("NO_COLOR", "1");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REDOPS_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("Failed to run {REDOPS_BIN}: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts `redops <args>` exited with `code`, with the output on failure.
fn expect_exit(output: &Output, code: i32, args: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "`redops {}`:\n{}",
        args.join(" "),
        describe(output)
    );
}

fn describe(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn nodes(status: &Value) -> &Vec<Value> {
    status["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes in {status:#}"))
}

/// The address of the one node with `role`.
fn addr_with_role(status: &Value, role: &str) -> String {
    let found: Vec<&Value> = nodes(status).iter().filter(|n| n["role"] == role).collect();
    assert_eq!(found.len(), 1, "expected one {role} in {status:#}");
    found[0]["addr"].as_str().unwrap().to_string()
}

fn assert_all_up(status: &Value) {
    assert_eq!(status["up"], true, "{status:#}");
    let mut roles: Vec<&str> = nodes(status)
        .iter()
        .map(|n| n["role"].as_str().unwrap_or("DOWN"))
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        ["master", "replica", "sentinel", "sentinel", "sentinel"],
        "{status:#}"
    );
    assert_eq!(
        status["master"].as_str(),
        Some(addr_with_role(status, "master").as_str()),
        "{status:#}"
    );
}

fn pids(status: &Value) -> Vec<u32> {
    nodes(status)
        .iter()
        .map(|n| n["pid"].as_u64().unwrap() as u32)
        .collect()
}

fn info(addr: &str, section: &str) -> String {
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
    redis::cmd("INFO").arg(section).query(&mut conn).unwrap()
}

fn info_number(addr: &str, section: &str, field: &str) -> u64 {
    let info = info(addr, section);
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{info}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn up_status_failover_and_down() {
    let mut lab = Lab::new();
    let out = lab.ok(&["up"]);
    let config = lab.path().join(topology::CONFIG_FILE);
    assert!(out.contains(&format!("Config: {}", config.display())), "{out}");
    assert!(
        out.contains(&format!("redops run --lab --lab-dir {}", lab.path().display())),
        "{out}"
    );
    assert!(lab.path().join("rules/memory.toml").is_file());
    assert!(lab.path().join("playbooks/optimize_memory.rhai").is_file());

    let (status, ok) = lab.status();
    assert!(ok, "{status:#}");
    assert_all_up(&status);
    let master = addr_with_role(&status, "master");
    let replica = addr_with_role(&status, "replica");
    let config_text = fs::read_to_string(&config).unwrap();
    for sentinel in nodes(&status).iter().filter(|n| n["role"] == "sentinel") {
        assert!(
            config_text.contains(sentinel["addr"].as_str().unwrap()),
            "{config_text}"
        );
    }

    let again = lab.ok(&["up"]);
    assert!(again.contains("already up"), "{again}");
    assert_eq!(pids(&lab.status().0), pids(&status));

    let out = lab.ok(&["chaos", "failover"]);
    assert!(out.contains(&format!("Killed the master {master}")), "{out}");
    assert!(out.contains(&format!("the master is now {replica}")), "{out}");

    let (after, ok) = lab.status();
    assert!(ok, "{after:#}");
    assert_all_up(&after);
    assert_eq!(after["master"].as_str(), Some(replica.as_str()), "{after:#}");
    assert_eq!(addr_with_role(&after, "replica"), master, "{after:#}");

    let out = lab.ok(&["down"]);
    assert!(out.contains("Stopped the lab"), "{out}");
    assert!(!lab.path().join(topology::STATE_FILE).exists());
    let alive: Vec<u32> = lab.pids.iter().copied().filter(|&pid| pid_alive(pid)).collect();
    assert!(alive.is_empty(), "still alive after `lab down`: {alive:?}");
    let (status, ok) = lab.status();
    assert!(!ok && status["up"] == false, "{status:#}");
}

#[test]
fn chaos_fills_memory_evicts_and_an_outage_is_undone_by_up() {
    let mut lab = Lab::new();
    lab.ok(&["up"]);
    let (status, _) = lab.status();
    let master = addr_with_role(&status, "master");
    let maxmemory = info_number(&master, "memory", "maxmemory");

    let out = lab.ok(&["chaos", "memory"]);
    assert!(out.contains(&format!("Filled the master {master}")), "{out}");
    assert!(
        out.contains("maxmemory-policy allkeys-lru"),
        "the undo is printed: {out}"
    );
    let used = info_number(&master, "memory", "used_memory");
    assert!(used * 10 > maxmemory * 9, "used_memory {used} of {maxmemory}");
    assert!(info(&master, "memory").contains("maxmemory_policy:noeviction"));

    let evicted_before = info_number(&master, "stats", "evicted_keys");
    let out = lab.ok(&["chaos", "evictions"]);
    let evicted = info_number(&master, "stats", "evicted_keys") - evicted_before;
    assert!(evicted > 2_000, "only {evicted} evictions: {out}");
    assert!(info(&master, "memory").contains("maxmemory_policy:allkeys-lru"));

    let out = lab.ok(&["chaos", "outage"]);
    assert!(out.contains("redops lab up"), "{out}");
    let (down, ok) = lab.status();
    assert!(!ok, "{down:#}");
    for node in nodes(&down) {
        let is_sentinel = node["kind"] == "sentinel";
        assert_eq!(node["up"], is_sentinel, "{down:#}");
    }

    let refused = lab.run(&["chaos", "failover"]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("redops lab up"),
        "{}",
        describe(&refused)
    );

    let out = lab.ok(&["up"]);
    assert!(out.contains("Restarted master, replica-1"), "{out}");
    let (after, ok) = lab.status();
    assert!(ok, "{after:#}");
    assert_all_up(&after);
    let addrs = |status: &Value| -> Vec<String> {
        nodes(status)
            .iter()
            .map(|n| n["addr"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(addrs(&after), addrs(&status), "the lab came back on the same ports");
}

#[test]
fn a_topology_dies_with_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let topology = Topology::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        topology::current_master(&topology.sentinel_addrs()).unwrap(),
        topology.master_addr()
    );
    assert!(info(&topology.replica_addr(), "replication").contains("master_link_status:up"));
    let mut processes = vec![topology.master(), topology.replica()];
    processes.extend(topology.sentinels());
    let pids: Vec<u32> = processes.iter().map(|p| p.pid().expect("running")).collect();
    assert_eq!(pids.len(), 5);

    drop(topology);

    let gone = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        pids.iter().all(|&pid| !pid_alive(pid))
    });
    assert!(
        gone,
        "still alive: {:?}",
        pids.iter().filter(|&&pid| pid_alive(pid)).collect::<Vec<_>>()
    );
}

#[test]
fn a_missing_redis_server_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let output = run_redops(
        &["lab", "up", "--dir", &dir.path().to_string_lossy()],
        &[("PATH", &empty_path.path().to_string_lossy())],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("apt-get install"), "{stderr}");
    assert!(!dir.path().join(topology::STATE_FILE).exists());
}

/// What `redops` prints on stderr when it picks the lab by itself.
const LAB_NOTE: &str = "redops: using the running lab's config state/lab/redops.toml; pass --config to choose";

/// Commands an SRE runs against the lab, each with something only the lab
/// makes it print. In order: `runs list` shows the dry runs before it.
const AGAINST_THE_LAB: &[(&[&str], &str)] = &[
    (&["sentinel", "validate"], "ok: no problems found"),
    (&["sentinel", "status"], "group lab (master name `mymaster`)"),
    (&["status"], "[OK] lab  role=master"),
    (&["check"], "ok: state/lab/redops.toml: 0 target(s)"),
    (
        &["playbook", "run", "optimize_memory", "--target", "lab", "--dry-run"],
        "optimize_memory on lab (dry run): succeeded",
    ),
    (&["runs", "list"], "optimize_memory"),
    (&["alerts", "list"], "no firing alerts"),
    (
        &[
            "silence",
            "add",
            "env=lab",
            "--duration",
            "1h",
            "--comment",
            "lab drill",
        ],
        "",
    ),
    (&["silence", "list"], "lab drill"),
    (&["backup", "list"], "no backups"),
];

#[test]
fn every_command_reaches_a_running_lab_without_being_told_where() {
    let mut lab = Lab::in_project();
    let up = lab.redops(&["lab", "up"]);
    expect_exit(&up, 0, &["lab", "up"]);
    assert!(stdout(&up).contains("redops run --lab\n"), "{}", describe(&up));

    for (args, expected) in AGAINST_THE_LAB {
        for with_flag in [false, true] {
            let mut args = args.to_vec();
            if with_flag {
                args.push("--lab");
            }
            let out = lab.redops(&args);
            expect_exit(&out, 0, &args);
            assert!(
                stdout(&out).contains(expected),
                "`redops {}`:\n{}",
                args.join(" "),
                describe(&out)
            );
            // The note when redops chose the lab, none when the user did.
            assert_eq!(
                stderr(&out).contains(LAB_NOTE),
                !with_flag,
                "`redops {}`:\n{}",
                args.join(" "),
                describe(&out)
            );
        }
    }
    let validate = lab.redops(&["sentinel", "validate"]);
    let (status, _) = lab.status();
    for node in nodes(&status) {
        let addr = node["addr"].as_str().unwrap();
        assert!(
            stdout(&validate).contains(addr),
            "{addr} not in:\n{}",
            describe(&validate)
        );
    }
    // The commands wrote to the lab's state store, not to one of their own.
    assert!(lab.path().join("state").is_dir());
    assert!(!lab.project().join("state/redops.db").exists());

    // An explicit config wins over the lab, from the flag or the environment;
    // --lab wins over the environment.
    harness::write_file(lab.project(), "config/redops.toml", "[engine]\nstate_dir = \"state\"\n");
    let validate = ["sentinel", "validate"];
    for (args, env) in [
        (&["sentinel", "validate", "--config", "config/redops.toml"][..], &[][..]),
        (&validate[..], &[("REDOPS_CONFIG", "config/redops.toml")][..]),
    ] {
        let out = redops_in(lab.project(), args, env);
        expect_exit(&out, 2, args);
        assert!(
            stderr(&out).contains("config/redops.toml has no [[sentinel]] group"),
            "{}",
            describe(&out)
        );
        assert!(!stderr(&out).contains(LAB_NOTE), "{}", describe(&out));
    }
    let out = redops_in(
        lab.project(),
        &["sentinel", "validate", "--lab"],
        &[("REDOPS_CONFIG", "config/redops.toml")],
    );
    expect_exit(&out, 0, &["sentinel", "validate", "--lab"]);
    let out = lab.redops(&["status", "--lab", "--config", "config/redops.toml"]);
    expect_exit(&out, 2, &["status", "--lab", "--config", "config/redops.toml"]);
    assert!(stderr(&out).contains("cannot be used with"), "{}", describe(&out));

    // The engine finds it too.
    let log = lab.project().join("run.log");
    let mut engine = Command::new(REDOPS_BIN)
        .args(["run", "--dry-run"])
        .current_dir(lab.project())
        .env_remove("REDOPS_CONFIG")
        .env_remove("REDOPS_LAB_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("Failed to run {REDOPS_BIN}: {e}"));
    let noted = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        fs::read_to_string(&log).unwrap_or_default().contains(LAB_NOTE)
    });
    let _ = engine.kill();
    let _ = engine.wait();
    assert!(
        noted,
        "`redops run` did not pick the lab:\n{}",
        fs::read_to_string(&log).unwrap()
    );

    // A lab whose processes are all gone (a reboot) is not running, even
    // though its lab.json is still there.
    let pids = pids(&status);
    for pid in &pids {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            pids.iter().all(|&pid| !pid_alive(pid))
        }),
        "the lab's processes did not die"
    );
    assert!(lab.path().join(topology::STATE_FILE).is_file());
    let out = lab.redops(&["sentinel", "validate", "--lab"]);
    expect_exit(&out, 2, &["sentinel", "validate", "--lab"]);
    assert!(
        stderr(&out).contains("no lab is running in state/lab: start one with `redops lab up`"),
        "{}",
        describe(&out)
    );
    let out = lab.redops(&["sentinel", "validate"]);
    expect_exit(&out, 2, &["sentinel", "validate"]);
    assert!(!stderr(&out).contains(LAB_NOTE), "{}", describe(&out));
    assert!(
        stderr(&out).contains(
            "config/redops.toml has no [[sentinel]] group; pass --config FILE, or start a lab with `redops lab up`"
        ),
        "{}",
        describe(&out)
    );
}

#[test]
fn lab_without_a_running_lab_fails_with_exit_2_naming_lab_up() {
    let project = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &["sentinel", "validate"],
        &["sentinel", "status"],
        &["status"],
        &["check"],
        &["alerts", "list"],
        &["runs", "list"],
        &["silence", "list"],
        &["playbook", "run", "optimize_memory", "--target", "lab", "--dry-run"],
        &["backup", "list"],
        &["restore", "--list"],
        &["analyze"],
        &["report", "capacity"],
    ];
    for args in commands {
        let mut args = args.to_vec();
        args.push("--lab");
        let out = redops_in(project.path(), &args, &[]);
        expect_exit(&out, 2, &args);
        assert!(
            stderr(&out).contains(
                "redops: --lab: no lab is running in state/lab: start one with `redops lab up`, or pass --config FILE"
            ),
            "`redops {}`:\n{}",
            args.join(" "),
            describe(&out)
        );
    }
    let elsewhere = project.path().join("mylab");
    let out = redops_in(
        project.path(),
        &["status", "--lab"],
        &[("REDOPS_LAB_DIR", &elsewhere.to_string_lossy())],
    );
    expect_exit(&out, 2, &["status", "--lab"]);
    assert!(
        stderr(&out).contains(&format!("start one with `redops lab up --dir {}`", elsewhere.display())),
        "{}",
        describe(&out)
    );
    // Neither a config nor a lab: the error says how to get either.
    let out = redops_in(project.path(), &["status"], &[]);
    expect_exit(&out, 2, &["status"]);
    assert!(
        stderr(&out).contains("no --config given, $REDOPS_CONFIG is unset and no lab runs in state/lab"),
        "{}",
        describe(&out)
    );
    assert!(!project.path().join("state").exists(), "nothing was created");
}
