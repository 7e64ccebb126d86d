//! What an on-call engineer's webhook gets for whole incidents, on the lab
//! topology (real redis-server and Sentinel processes) with the shipped
//! rules, playbooks and default `[[incident]]`s: one page per failover,
//! whose body names what the failover explains.

mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use harness::{Received, Redops, WebhookReceiver, run_redops};
use redops::lab::topology::{LabState, pid_alive};

/// `redops lab up` in a temp dir, taken down (and killed) on drop.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn up() -> Lab {
        let lab = Lab {
            dir: tempfile::tempdir().expect("Failed to create a temp dir"),
        };
        lab.ok(&["up"]);
        lab
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ok(&self, args: &[&str]) -> String {
        let dir = self.path().to_string_lossy().into_owned();
        let mut full = vec!["lab"];
        full.extend(args);
        full.extend(["--dir", &dir]);
        let out = run_redops(&full, &[]);
        assert!(
            out.status.success(),
            "`redops {}` failed:\n{}{}",
            full.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let pids: Vec<u32> = LabState::load(self.path())
            .ok()
            .flatten()
            .map(|s| s.nodes.iter().map(|n| n.pid).collect())
            .unwrap_or_default();
        let _ = run_redops(&["lab", "down", "--dir", &self.path().to_string_lossy()], &[]);
        for pid in pids.into_iter().filter(|p| pid_alive(*p)) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Firing alert notifications that are not updates (a playbook outcome, an
/// acknowledgement) of an earlier one: what pages a human.
fn pages(received: &[Received]) -> Vec<&Received> {
    received
        .iter()
        .filter(|r| {
            r.body["kind"] == "alert"
                && r.body["status"] == "firing"
                && r.body.get("playbook").is_none()
                && r.body.get("acked_by").is_none()
        })
        .collect()
}

fn folded_rules(page: &Received) -> Vec<String> {
    page.body["folded"]
        .as_array()
        .map(|f| f.iter().filter_map(|a| a["rule"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn each_failover_pages_once_naming_what_it_explains() {
    const FAILOVERS: usize = 5;
    let lab = Lab::up();
    let hook = WebhookReceiver::start();
    let mut redops = Redops::start_with_env(lab.path(), &[], &[("REDOPS_WEBHOOK_URL", &hook.url())]);
    // Both nodes are followed, and subscribed to, before the first kill.
    let ready = harness::wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        redops.output().matches("Keyspace subscription active").count() >= 2
    });
    assert!(ready, "{}", redops.output());

    let mut old_masters = Vec::new();
    for n in 1..=FAILOVERS {
        let before = LabState::load(lab.path()).unwrap().unwrap();
        old_masters.push(before.master_addr().expect("the lab names its master"));
        lab.ok(&["chaos", "failover"]);
        let got = hook.wait_for(Duration::from_secs(30), |r| {
            pages(r)
                .iter()
                .filter(|p| p.body["rule"] == "sentinel_failover")
                .count()
                >= n
        });
        let failover_pages = pages(&got)
            .into_iter()
            .filter(|p| p.body["rule"] == "sentinel_failover")
            .count();
        assert_eq!(
            failover_pages,
            n,
            "failover {n}:\n{}\n{}",
            hook.describe(),
            redops.output()
        );
    }

    // Held alerts page after `hold` (45 s) if their cause never came, and a
    // folded alert more severe than its cause after `window` (60 s): wait
    // past both before counting.
    std::thread::sleep(Duration::from_secs(65));
    let all = hook.received();
    let pages = pages(&all);
    let by_rule: BTreeMap<String, usize> = pages.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p.body["rule"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        m
    });
    assert_eq!(
        by_rule,
        BTreeMap::from([("sentinel_failover".to_owned(), FAILOVERS)]),
        "one page per failover and nothing else:\n{}\n{}",
        hook.describe(),
        redops.output()
    );
    for (page, old_master) in pages.iter().zip(&old_masters) {
        let folded = folded_rules(page);
        assert!(
            folded.iter().any(|r| r == "redis_down") && folded.iter().any(|r| r == "master_odown"),
            "the page names the old master's outage and the Sentinels' verdict: {folded:?}\n{}\n{}",
            page.text(),
            redops.output()
        );
        let down = page.body["folded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "redis_down")
            .unwrap();
        assert_eq!(down["target"], format!("lab/{old_master}"), "{}", page.text());
    }
    // Every other notification belongs to a failover: its playbook's outcome
    // and message; no other rule and no other playbook told anyone anything.
    for r in &all {
        let about = match r.body["kind"].as_str() {
            Some("alert") => r.body["rule"].as_str(),
            Some("message") => r.body["playbook"].as_str(),
            _ => None,
        };
        assert_eq!(about, Some("sentinel_failover"), "{}\n{}", r.text(), hook.describe());
    }
    assert!(redops.terminate().success(), "{}", redops.output());
}
