//! High availability with real processes: three `redops run` instances with
//! the same rules, each with its own state dir, elect one leader through a
//! lease in a real redis-server (or a Sentinel group's master). Only the
//! leader runs playbooks and delivers; a `kill -9` of the leader hands over
//! within the lease TTL, and across the takeover no playbook runs twice and
//! no notification is lost. Every side effect is fenced by the lease: a
//! leader stopped (SIGSTOP) or cut off past its lease acts no more, and the
//! run it left unfinished is run again, once, by the new leader.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::{CuttableProxy, Received, Redops, TestRedis, WebhookReceiver, alerts, engine_dir, wait_until};
use redops::lab::topology::Topology;

/// Two alerts, each raised by pushing to a list and each running a playbook
/// that counts its runs in Redis.
const RULES: &str = r#"
[[rule]]
name = "first"
source = "sample"
when = "first_trigger > 0"
severity = "critical"
playbook = "mark"
params = { marker = "ha:marker:first" }
summary = "first on {{ target }}"

[[rule]]
name = "second"
source = "sample"
when = "second_trigger > 0"
severity = "critical"
playbook = "mark"
params = { marker = "ha:marker:second" }
summary = "second on {{ target }}"
"#;

const MARK: &str = r#"redis.cmd(["INCR", params.marker]);"#;

/// Sleeps, then writes: a leader stopped or killed during the sleep has
/// claimed the run and written nothing yet.
const SLOW: &str = r#"sleep(4); redis.cmd(["INCR", params.marker]);"#;

/// One alert whose playbook is [`SLOW`].
const SLOW_RULE: &str = r#"
[[rule]]
name = "slow"
source = "sample"
when = "first_trigger > 0"
severity = "critical"
playbook = "slow"
params = { marker = "ha:marker:slow" }
summary = "slow on {{ target }}"
"#;

/// The bearer token of every instance's API.
const API_TOKEN: &str = "ha-e2e-token";

const PROBES: &str =
    "probes = { first_trigger = \"LLEN ha:trigger:first\", second_trigger = \"LLEN ha:trigger:second\" }";

/// A short lease keeps the test quick; the 10 s default is asserted in the
/// config's unit test.
const TTL: Duration = Duration::from_secs(3);

struct Instance {
    id: String,
    redops: Redops,
    api_port: u16,
    dir: tempfile::TempDir,
}

impl Instance {
    fn start(id: &str, config: &str) -> Instance {
        Self::start_with_rules(id, config, RULES)
    }

    fn start_with_rules(id: &str, config: &str, rules: &str) -> Instance {
        let api_port = redops::lab::process::free_port().unwrap();
        let lease_on = if config.contains("[[sentinel]]") {
            "lab"
        } else if config.contains("name = \"lease\"") {
            "lease"
        } else {
            "cache"
        };
        let config = format!(
            "{config}\n[api]\nlisten = \"127.0.0.1:{api_port}\"\ntoken = \"{API_TOKEN}\"\n\n[ha]\nenabled = true\nlease_ttl = \"{}s\"\ninstance_id = \"{id}\"\nlease_on = \"{lease_on}\"\n",
            TTL.as_secs(),
        );
        let dir = engine_dir("500ms", &config, &[("ha", rules)], &[("mark", MARK), ("slow", SLOW)]);
        let mut redops = Redops::start(dir.path(), &[]);
        redops.wait_log("Engine started", Duration::from_secs(15));
        Instance {
            id: id.to_owned(),
            redops,
            api_port,
            dir,
        }
    }

    fn metrics(&self) -> String {
        reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", self.api_port))
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// Deliveries this instance made, from its debug log.
    fn deliveries(&self) -> usize {
        self.redops.output().matches("Notification delivered").count()
    }

    fn api(&self, path: &str) -> serde_json::Value {
        reqwest::blocking::get(format!("http://127.0.0.1:{}{path}", self.api_port))
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.id))
    }

    /// This instance's stored runs of `playbook`, newest first.
    fn runs(&self, playbook: &str) -> Vec<serde_json::Value> {
        let runs = self.api("/api/v1/runs");
        runs.as_array()
            .unwrap_or_else(|| panic!("runs of {}: {runs}", self.id))
            .iter()
            .filter(|r| r["playbook"] == playbook)
            .cloned()
            .collect()
    }

    /// SIGSTOP or SIGCONT: a process paused with its connections open, as a
    /// long GC pause or a frozen VM.
    fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.redops.pid().to_string()])
            .status()
            .expect("Failed to run kill");
        assert!(sent.success(), "kill -{signal} {} failed", self.id);
    }

    /// The id of the run this instance logged as started last.
    fn started_run_id(&self) -> String {
        let output = self.redops.output();
        let line = output
            .lines()
            .rev()
            .find(|l| l.contains("Playbook started"))
            .unwrap_or_else(|| panic!("{} started no run:\n{output}", self.id));
        let field = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("run_id="))
            .unwrap_or_else(|| panic!("no run_id in {line:?}"));
        field.trim_matches('"').to_owned()
    }
}

fn leader_of(conn: &mut redis::Connection) -> Option<String> {
    redis::cmd("GET").arg("redops:ha:leader").query(conn).ok().flatten()
}

fn counter(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("GET")
        .arg(key)
        .query::<Option<i64>>(conn)
        .unwrap()
        .unwrap_or(0)
}

/// Waits until some instance holds the lease and returns its id.
fn wait_for_leader(conn: &mut redis::Connection, not: Option<&str>, timeout: Duration) -> String {
    let mut leader = None;
    let found = wait_until(timeout, Duration::from_millis(20), || {
        leader = leader_of(conn).filter(|l| Some(l.as_str()) != not);
        leader.is_some()
    });
    assert!(found, "no leader (other than {not:?}) within {timeout:?}");
    leader.unwrap()
}

/// Notifications per idempotency key: a key seen twice is a duplicate.
fn by_key(received: &[Received]) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    for r in received {
        *keys
            .entry(r.header("idempotency-key").unwrap_or("-").to_owned())
            .or_default() += 1;
    }
    keys
}

/// The plain firing notifications of a rule (not the playbook's update).
fn pages<'a>(received: &'a [Received], rule: &str) -> Vec<&'a Received> {
    alerts(received, rule, "firing")
        .into_iter()
        .filter(|r| r.body["playbook"].is_null())
        .collect()
}

#[test]
fn one_leader_acts_and_a_follower_takes_over_without_repeating_or_losing() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n{PROBES}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let mut instances: Vec<Instance> = ["a", "b", "c"].iter().map(|id| Instance::start(id, &config)).collect();
    let mut conn = redis.conn();
    let first_leader = wait_for_leader(&mut conn, None, TTL * 2);
    // Exactly one instance believes it leads, and says so on /metrics.
    let leaders = || {
        instances
            .iter()
            .filter(|i| i.metrics().contains("\nredops_ha_leader 1"))
            .count()
    };
    assert!(
        wait_until(TTL, Duration::from_millis(50), || leaders() == 1),
        "{} leaders; metrics of a:\n{}",
        leaders(),
        instances[0].metrics()
    );
    let leader_metrics = instances.iter().find(|i| i.id == first_leader).unwrap().metrics();
    assert!(leader_metrics.contains("\nredops_ha_leader 1"), "{leader_metrics}");
    assert!(
        leader_metrics.contains("\nredops_ha_fencing_token 1"),
        "{leader_metrics}"
    );

    // The first alert: one page and one playbook run, by the leader only,
    // although all three instances see it fire.
    redis::cmd("RPUSH")
        .arg("ha:trigger:first")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    hook.wait_for(Duration::from_secs(10), |r| pages(r, "first").len() == 1);
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        counter(&mut conn, "ha:marker:first") == 1
    }));
    // Time for the followers to fire it too, and to drop their copies.
    std::thread::sleep(TTL);
    assert_eq!(counter(&mut conn, "ha:marker:first"), 1);
    assert_eq!(pages(&hook.received(), "first").len(), 1, "{}", hook.describe());
    for i in instances.iter().filter(|i| i.id != first_leader) {
        assert_eq!(i.deliveries(), 0, "follower {} delivered:\n{}", i.id, i.redops.output());
        assert!(
            !i.redops.output().contains("Playbook started"),
            "follower {} ran a playbook",
            i.id
        );
    }

    let mut delivered = hook.received();

    // The receiver fails: the leader keeps the second alert's page pending
    // and dies with it undelivered.
    hook.set_status(500);
    redis::cmd("RPUSH")
        .arg("ha:trigger:second")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        counter(&mut conn, "ha:marker:second") == 1
    }));
    hook.wait_for(Duration::from_secs(10), |r| !alerts(r, "second", "firing").is_empty());
    let old = instances.iter().position(|i| i.id == first_leader).unwrap();
    // The run is over, claim closed, when the leader says so: killed
    // before, it would be a run left unfinished, and run again.
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        instances[old].redops.output().matches("Playbook succeeded").count() == 2
    }));
    instances[old].redops.kill9();
    let killed = Instant::now();
    // What the hook got while failing was refused, not delivered.
    hook.clear();
    hook.set_status(200);

    let new_leader = wait_for_leader(&mut conn, Some(&first_leader), TTL * 2);
    let takeover = killed.elapsed();
    eprintln!("takeover {takeover:?} after kill -9 of the leader (lease TTL {TTL:?})");
    assert!(
        takeover <= TTL + Duration::from_millis(500),
        "takeover took {takeover:?}, lease TTL {TTL:?}"
    );
    let new = instances.iter().position(|i| i.id == new_leader).unwrap();
    instances[new]
        .redops
        .wait_log("HA: became the leader", Duration::from_secs(5));

    // Nothing lost: the new leader delivers the page the old one could not.
    hook.wait_for(Duration::from_secs(15), |r| pages(r, "second").len() == 1);
    // Only the old leader held the outcome of the run it made. Back as a
    // follower, it delivers that, and nothing the new leader owns.
    let restarted = Redops::start(instances[old].dir.path(), &[]);
    instances[old].redops = restarted;
    hook.wait_for(Duration::from_secs(15), |r| {
        alerts(r, "second", "firing")
            .iter()
            .any(|n| !n.body["playbook"].is_null())
    });
    // A third alert after the takeover: paged and remediated once, by the
    // new leader.
    redis::cmd("DEL")
        .arg("ha:trigger:first")
        .query::<()>(&mut conn)
        .unwrap();
    hook.wait_for(Duration::from_secs(10), |r| !alerts(r, "first", "resolved").is_empty());
    redis::cmd("RPUSH")
        .arg("ha:trigger:first")
        .arg("y")
        .query::<()>(&mut conn)
        .unwrap();
    hook.wait_for(Duration::from_secs(10), |r| pages(r, "first").len() == 1);
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        counter(&mut conn, "ha:marker:first") == 2
    }));
    std::thread::sleep(TTL);

    // No playbook ran twice for one firing, across the takeover.
    assert_eq!(
        counter(&mut conn, "ha:marker:first"),
        2,
        "one run per firing of `first`"
    );
    assert_eq!(
        counter(&mut conn, "ha:marker:second"),
        1,
        "`second` fired once and ran once"
    );
    delivered.extend(hook.received());
    // At most one duplicate per receiver, and here none: nothing was in
    // flight at the kill, and the new leader re-sent nothing the old one
    // had delivered.
    let keys = by_key(&delivered);
    assert!(keys.values().all(|n| *n == 1), "{keys:?}\n{}", hook.describe());
    assert_eq!(pages(&delivered, "first").len(), 2, "{}", hook.describe());
    assert_eq!(pages(&delivered, "second").len(), 1, "{}", hook.describe());
    assert_eq!(
        alerts(&delivered, "second", "firing").len(),
        2,
        "the page and the run's outcome"
    );
    assert_eq!(alerts(&delivered, "first", "resolved").len(), 1, "{}", hook.describe());
    for i in instances.iter().filter(|i| i.id != new_leader) {
        let own = if i.id == first_leader { 1 } else { 0 };
        assert_eq!(
            i.deliveries(),
            own,
            "follower {} delivered:\n{}",
            i.id,
            i.redops.output()
        );
        assert!(
            !i.redops.output().contains("Playbook started"),
            "follower {} ran a playbook",
            i.id
        );
    }
}

#[test]
fn the_lease_follows_the_sentinel_master_and_leadership_continues() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = Topology::start(lab_dir.path()).expect("lab topology");
    let hook = WebhookReceiver::start();
    let list: Vec<String> = lab.sentinel_addrs().iter().map(|s| format!("\"{s}\"")).collect();
    let config = format!(
        "[[sentinel]]\nname = \"lab\"\nmaster = \"mymaster\"\nsentinels = [{}]\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        list.join(", "),
        hook.url()
    );
    let (old_master, replica) = (lab.master_addr(), lab.replica_addr());
    let mut instances: Vec<Instance> = ["a", "b"].iter().map(|id| Instance::start(id, &config)).collect();
    let master_conn = |addr: &str| {
        redis::Client::open(format!("redis://{addr}"))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    };
    let leader = wait_for_leader(&mut master_conn(&old_master), None, TTL * 2);

    lab.master().kill().unwrap();
    let promoted = wait_until(Duration::from_secs(40), Duration::from_millis(100), || {
        redis::Client::open(format!("redis://{replica}"))
            .ok()
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)).ok())
            .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c).ok())
            .is_some_and(|role| matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master"))
    });
    assert!(promoted, "{replica} was not promoted");
    let mut new_master = master_conn(&replica);
    // The old master's lease, replicated, may linger there for a TTL, and
    // its holder may lose it to the other instance if the failover outlasts
    // its grace: settled is a holder that says it leads and still holds
    // the lease there more than a TTL later, so it renews there.
    let leads = |id: &str| {
        instances
            .iter()
            .any(|i| i.id == id && i.metrics().contains("\nredops_ha_leader 1"))
    };
    let mut holder = None;
    let settled = wait_until(TTL * 8, Duration::from_millis(100), || {
        let Some(first) = leader_of(&mut new_master).filter(|h| leads(h)) else {
            return false;
        };
        std::thread::sleep(TTL + Duration::from_millis(200));
        holder = leader_of(&mut new_master).filter(|h| *h == first && leads(h));
        holder.is_some()
    });
    assert!(settled, "no settled leader on the new master {replica}");
    let holder = holder.unwrap();
    let leaders: Vec<&str> = instances
        .iter()
        .filter(|i| i.metrics().contains("\nredops_ha_leader 1"))
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(leaders, [holder.as_str()], "leader before the failover: {leader}");
    let holder = instances.iter_mut().find(|i| i.id == holder).unwrap();
    holder
        .redops
        .wait_log("the lease follows the group's new master", Duration::from_secs(1));
}

/// The timestamp of the first log line holding `needle`.
fn logged_at(output: &str, needle: &str) -> String {
    let line = output
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{output}"));
    line.split_whitespace().next().unwrap_or_default().to_owned()
}

#[test]
fn a_leader_cut_off_from_redis_stops_acting_before_a_follower_takes_over() {
    let redis = TestRedis::start(&[]);
    let proxy = CuttableProxy::start(&format!("127.0.0.1:{}", redis.port()));
    let hook = WebhookReceiver::start();
    let config = |url: String| {
        format!(
            "[[target]]\nname = \"cache\"\nurl = \"{url}\"\n{PROBES}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
            hook.url()
        )
    };
    let mut conn = redis.conn();
    // `a` reaches Redis through the proxy, and leads.
    let mut a = Instance::start("a", &config(format!("redis://{}/0", proxy.addr())));
    assert_eq!(wait_for_leader(&mut conn, None, TTL * 2), "a");
    let mut b = Instance::start("b", &config(redis.url(0)));

    proxy.cut();
    assert_eq!(wait_for_leader(&mut conn, Some("a"), TTL * 3), "b");
    b.redops.wait_log("HA: became the leader", Duration::from_secs(5));
    a.redops.wait_log("HA: stepped down", Duration::from_secs(5));
    // Both clocks are this machine's: `a` stopped acting before `b` began.
    let stepped_down = logged_at(&a.redops.output(), "HA: stepped down");
    let took_over = logged_at(&b.redops.output(), "HA: became the leader");
    assert!(
        stepped_down < took_over,
        "a stepped down at {stepped_down}, b led from {took_over}"
    );
    assert!(a.metrics().contains("\nredops_ha_leader 0"), "{}", a.metrics());
    assert!(b.metrics().contains("\nredops_ha_fencing_token 2"), "{}", b.metrics());

    // Back in touch, `a` stays a follower of `b`.
    proxy.restore();
    std::thread::sleep(TTL);
    assert_eq!(leader_of(&mut conn).as_deref(), Some("b"));
    assert!(a.metrics().contains("\nredops_ha_leader 0"), "{}", a.metrics());
}

#[test]
fn with_nobody_able_to_lead_pages_wait_and_go_out_once_a_leader_exists_again() {
    let watched = TestRedis::start(&[]);
    let lease = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n{PROBES}\n\n[[target]]\nname = \"lease\"\nurl = \"{}\"\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        watched.url(0),
        lease.url(0),
        hook.url()
    );
    let mut instances: Vec<Instance> = ["a", "b"].iter().map(|id| Instance::start(id, &config)).collect();
    let first = wait_for_leader(&mut lease.conn(), None, TTL * 2);

    lease.process.kill().unwrap();
    // Until its lease runs out the leader still leads, and pages; the alert
    // comes once it stepped down and nobody leads.
    let first = instances.iter_mut().find(|i| i.id == first).unwrap();
    first.redops.wait_log("HA: stepped down", TTL);
    let mut conn = watched.conn();
    redis::cmd("RPUSH")
        .arg("ha:trigger:first")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    // Both go isolated after twice the TTL. Neither pages (both would, on
    // either side of a partition) and neither remediates.
    for i in &mut instances {
        i.redops
            .wait_log("HA: lease store unreachable for twice the lease TTL", TTL * 3);
    }
    std::thread::sleep(TTL);
    assert!(
        pages(&hook.received(), "first").is_empty(),
        "paged with no leader: {}",
        hook.describe()
    );
    assert_eq!(
        counter(&mut conn, "ha:marker:first"),
        0,
        "a playbook ran with no leader"
    );

    // The lease store back, one leader again: it sends the page that
    // waited in its outbox, and only it acts.
    lease.process.restart().unwrap();
    let leader = wait_for_leader(&mut lease.conn(), None, TTL * 3);
    let leaders = || {
        instances
            .iter()
            .filter(|i| i.metrics().contains("\nredops_ha_leader 1"))
            .map(|i| i.id.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(TTL, Duration::from_millis(50), || leaders() == [leader.clone()]),
        "{:?}",
        leaders()
    );
    hook.wait_for(Duration::from_secs(10), |r| !pages(r, "first").is_empty());
    std::thread::sleep(TTL);
    assert_eq!(pages(&hook.received(), "first").len(), 1, "{}", hook.describe());
    let follower = instances.iter_mut().find(|i| i.id != leader).unwrap();
    follower
        .redops
        .wait_log("HA: no longer isolated", Duration::from_secs(1));
    assert_eq!(follower.deliveries(), 0, "{}", follower.redops.output());
}

#[test]
fn a_hung_lease_store_makes_the_leader_step_down_within_the_ttl() {
    let watched = TestRedis::start(&[]);
    let lease = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n{PROBES}\n\n[[target]]\nname = \"lease\"\nurl = \"{}\"\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        watched.url(0),
        lease.url(0),
        hook.url()
    );
    let mut a = Instance::start("a", &config);
    assert_eq!(wait_for_leader(&mut lease.conn(), None, TTL * 2), "a");

    // SIGSTOP: connections stay open and nothing answers.
    lease.process.pause().unwrap();
    let paused = Instant::now();
    a.redops.wait_log("HA: stepped down", TTL * 2);
    let stepped_down = paused.elapsed();
    eprintln!("stepped down {stepped_down:?} after the lease store hung (lease TTL {TTL:?})");
    assert!(
        stepped_down < TTL,
        "still leading {stepped_down:?} into a hang; the lease lasts {TTL:?}"
    );
    assert!(a.metrics().contains("\nredops_ha_leader 0"), "{}", a.metrics());

    // A renewal queued during the hang runs at the resume and holds the
    // lease for one more TTL: nobody leads meanwhile, then `a` again.
    lease.process.resume().unwrap();
    assert_eq!(wait_for_leader(&mut lease.conn(), None, TTL * 3), "a");
    assert!(
        wait_until(TTL * 2 + Duration::from_secs(1), Duration::from_millis(50), || a
            .metrics()
            .contains("\nredops_ha_leader 1")),
        "{}",
        a.redops.output()
    );
}

#[test]
fn an_instance_that_starts_late_and_leads_does_not_remediate_an_open_firing_again() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n{PROBES}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    // Fires 2 s after the condition holds: an instance started later leads
    // by the time it fires.
    let rules = RULES.replacen("severity = \"critical\"", "severity = \"critical\"\nfor = \"2s\"", 1);
    let mut conn = redis.conn();
    let mut a = Instance::start_with_rules("a", &config, &rules);
    assert_eq!(wait_for_leader(&mut conn, None, TTL * 2), "a");
    redis::cmd("RPUSH")
        .arg("ha:trigger:first")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    let first = hook.wait_for(Duration::from_secs(10), |r| pages(r, "first").len() == 1);
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        counter(&mut conn, "ha:marker:first") == 1
    }));
    // Finished and its claim closed, not a run to be taken over.
    a.redops.wait_log("Playbook succeeded", Duration::from_secs(5));
    a.redops.kill9();
    // `c` never saw the alert start: it fires it 2 s after its own start,
    // as the leader, while the firing `a` recorded is still open.
    assert!(wait_until(TTL * 2, Duration::from_millis(50), || leader_of(&mut conn).is_none()));
    let mut c = Instance::start_with_rules("c", &config, &rules);
    assert_eq!(wait_for_leader(&mut conn, None, TTL), "c");
    c.redops
        .wait_log("HA: playbook already ran for this firing", Duration::from_secs(10));
    assert_eq!(counter(&mut conn, "ha:marker:first"), 1, "{}", c.redops.output());
    // Its page is the one duplicate, under the first page's key.
    let got = hook.wait_for(Duration::from_secs(10), |r| pages(r, "first").len() == 2);
    let key = |r: &Received| r.header("idempotency-key").map(str::to_owned);
    assert_eq!(
        key(pages(&got, "first")[1]),
        key(pages(&first, "first")[0]),
        "{}",
        hook.describe()
    );
}

#[test]
fn an_orderly_stop_frees_the_lease_for_a_follower_at_once() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n{PROBES}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let mut conn = redis.conn();
    let mut a = Instance::start("a", &config);
    assert_eq!(wait_for_leader(&mut conn, None, TTL * 2), "a");
    let _b = Instance::start("b", &config);

    let stopping = Instant::now();
    assert!(a.redops.terminate().success(), "{}", a.redops.output());
    assert!(a.redops.output().contains("HA lease released"), "{}", a.redops.output());
    assert_eq!(wait_for_leader(&mut conn, Some("a"), TTL), "b");
    // Within one renewal period of the stop, not a whole TTL.
    let handover = stopping.elapsed();
    eprintln!(
        "handover {handover:?} after SIGTERM of the leader (renewal every {:?})",
        TTL / 3
    );
    assert!(handover < TTL, "handover took {handover:?}");
}

/// A watched Redis that is also the lease store, and `a` leading.
fn slow_pair(redis: &TestRedis, hook: &WebhookReceiver) -> (Instance, Instance) {
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n{PROBES}\n\n[receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let a = Instance::start_with_rules("a", &config, SLOW_RULE);
    assert_eq!(wait_for_leader(&mut redis.conn(), None, TTL * 2), "a");
    let b = Instance::start_with_rules("b", &config, SLOW_RULE);
    (a, b)
}

#[test]
fn a_leader_paused_mid_playbook_is_fenced_and_the_new_leader_runs_it_once() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (mut a, mut b) = slow_pair(&redis, &hook);
    let mut conn = redis.conn();
    redis::cmd("RPUSH")
        .arg("ha:trigger:first")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    a.redops.wait_log("Playbook started", Duration::from_secs(10));
    let lost = a.started_run_id();

    // Paused in its sleep, past the lease: `b` takes over and runs it again.
    a.signal("STOP");
    let resume_a = a_guard(&a);
    b.redops.wait_log("HA: became the leader", TTL * 2);
    b.redops.wait_log("HA: running again a playbook run", TTL);
    std::thread::sleep(Duration::from_secs(2));
    // `a` wakes with its sleep over and its next step a write: refused.
    a.signal("CONT");
    drop(resume_a);
    a.redops.wait_log("HA: side effect refused", Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        counter(&mut conn, "ha:marker:slow") == 1
    }));
    b.redops.wait_log("Playbook succeeded", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        counter(&mut conn, "ha:marker:slow"),
        1,
        "only the new leader's run writes"
    );

    // `a` recorded its write as fenced, in its run's audit.
    let runs = a.runs("slow");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["id"], lost.as_str());
    assert_eq!(runs[0]["outcome"], "failed", "{}", runs[0]);
    let detail = runs[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("fenced: this instance no longer holds the HA lease (token 1); the new leader runs it"),
        "{detail}"
    );
    let audit = a.api(&format!("/api/v1/runs/{lost}"))["audit"].clone();
    let fenced: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"].as_str().is_some_and(|o| o.starts_with("fenced:")))
        .collect();
    assert_eq!(fenced.len(), 1, "{audit}");
    assert_eq!(fenced[0]["kind"], "redis");
    assert_eq!(fenced[0]["detail"], "INCR ha:marker:slow");
    // `b`'s run says whose run it repeats.
    let runs = b.runs("slow");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["retry_of"], lost.as_str(), "{}", runs[0]);
    assert_eq!(runs[0]["outcome"], "succeeded", "{}", runs[0]);
}

/// Resumes a stopped instance if the test fails while it is stopped, so
/// that its drop (SIGKILL) and the harness do not wait on it.
fn a_guard(instance: &Instance) -> impl Drop {
    struct Resume(u32);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
        }
    }
    Resume(instance.redops.pid())
}

#[test]
fn a_leader_killed_mid_run_has_its_run_completed_once_by_the_new_leader() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (mut a, mut b) = slow_pair(&redis, &hook);
    let mut conn = redis.conn();
    redis::cmd("RPUSH")
        .arg("ha:trigger:first")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    a.redops.wait_log("Playbook started", Duration::from_secs(10));
    let lost = a.started_run_id();
    a.redops.kill9();

    b.redops.wait_log("HA: became the leader", TTL * 2);
    b.redops.wait_log("HA: running again a playbook run", TTL);
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        counter(&mut conn, "ha:marker:slow") == 1
    }));
    b.redops.wait_log("Playbook succeeded", Duration::from_secs(5));
    // Several scans later, still once.
    std::thread::sleep(TTL);
    assert_eq!(counter(&mut conn, "ha:marker:slow"), 1);
    assert_eq!(
        b.redops.output().matches("HA: running again a playbook run").count(),
        1,
        "{}",
        b.redops.output()
    );
    let runs = b.runs("slow");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["retry_of"], lost.as_str(), "{}", runs[0]);
    assert_eq!(runs[0]["outcome"], "succeeded", "{}", runs[0]);
}

#[test]
fn a_partition_during_an_alert_storm_pages_each_alert_at_least_once_and_at_most_twice() {
    const STORM: usize = 12;
    let watched = TestRedis::start(&[]);
    let lease = TestRedis::start(&[]);
    let proxy = CuttableProxy::start(&format!("127.0.0.1:{}", lease.port()));
    let hook = WebhookReceiver::start();
    let probes: Vec<String> = (0..STORM).map(|i| format!("s{i} = \"LLEN storm:{i}\"")).collect();
    let rules: String = (0..STORM)
        .map(|i| {
            format!(
                "[[rule]]\nname = \"storm_{i}\"\nsource = \"sample\"\nwhen = \"s{i} > 0\"\nseverity = \"critical\"\n\
                 summary = \"storm {i}\"\n\n"
            )
        })
        .collect();
    let config = |lease_url: String| {
        format!(
            "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ {} }}\n\n[[target]]\nname = \"lease\"\nurl = \"{lease_url}\"\n\n\
             [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
            watched.url(0),
            probes.join(", "),
            hook.url()
        )
    };
    // `a` reaches the lease store through the proxy, and leads.
    let mut a = Instance::start_with_rules("a", &config(format!("redis://{}/0", proxy.addr())), &rules);
    assert_eq!(wait_for_leader(&mut lease.conn(), None, TTL * 2), "a");
    let mut b = Instance::start_with_rules("b", &config(lease.url(0)), &rules);

    let mut conn = watched.conn();
    let raise = |conn: &mut redis::Connection, i: usize| {
        redis::cmd("RPUSH")
            .arg(format!("storm:{i}"))
            .arg("x")
            .query::<()>(conn)
            .unwrap();
    };
    // Alerts before, during and after the cut: `a` leads, then nobody
    // (after `a` stepped down, before `b` took over), then `b`.
    for i in 0..STORM {
        if i == 3 {
            proxy.cut();
        }
        raise(&mut conn, i);
        std::thread::sleep(Duration::from_millis(400));
    }
    a.redops.wait_log("HA: stepped down", TTL * 2);
    b.redops.wait_log("HA: became the leader", TTL * 2);
    let name = |i: usize| format!("storm_{i}");
    hook.wait_for(Duration::from_secs(20), |r| {
        (0..STORM).all(|i| !pages(r, &name(i)).is_empty())
    });
    // Time for any second copy to arrive.
    std::thread::sleep(TTL * 2);
    let got = hook.received();
    for i in 0..STORM {
        let n = pages(&got, &name(i)).len();
        assert!((1..=2).contains(&n), "storm_{i} paged {n} times\n{}", hook.describe());
    }
    // `a` stopped delivering once it stepped down: what it delivered, it
    // delivered before.
    let output = a.redops.output();
    let stepped_down = output.find("HA: stepped down").unwrap();
    assert!(
        !output[stepped_down..].contains("Notification delivered"),
        "a delivered after stepping down:\n{output}"
    );
}

#[test]
fn a_playbook_run_asked_of_a_follower_is_refused_with_the_leader_named() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let (a, b) = slow_pair(&redis, &hook);
    assert!(b.metrics().contains("\nredops_ha_leader 0"), "{}", b.metrics());
    let http = reqwest::blocking::Client::new();
    let ask = |instance: &Instance| {
        http.post(format!(
            "http://127.0.0.1:{}/api/v1/playbooks/slow/run",
            instance.api_port
        ))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({ "target": "cache", "params": { "marker": "ha:marker:api" } }))
        .send()
        .unwrap()
    };
    let refused = ask(&b);
    assert_eq!(refused.status(), 409);
    let body: serde_json::Value = refused.json().unwrap();
    let error = body["error"].as_str().unwrap_or_default();
    let leader_api = format!("127.0.0.1:{}", a.api_port);
    assert!(
        error.contains("HA follower") && error.contains("`a`") && error.contains(&leader_api),
        "{body}"
    );
    assert_eq!(body["leader"], "a");
    assert_eq!(body["leader_api"], leader_api.as_str());

    // Asked of the leader, it runs there, once.
    let accepted = ask(&a);
    assert_eq!(accepted.status(), 202);
    let mut conn = redis.conn();
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        counter(&mut conn, "ha:marker:api") == 1
    }));
    assert!(b.runs("slow").is_empty(), "the follower ran it");
}

#[test]
fn with_the_lease_store_hung_a_burst_of_alerts_is_still_paged_promptly() {
    const BURST: usize = 6;
    let watched = TestRedis::start(&[]);
    let lease = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let probes: Vec<String> = (0..BURST).map(|i| format!("b{i} = \"LLEN burst:{i}\"")).collect();
    let rules: String = (0..BURST)
        .map(|i| {
            format!(
                "[[rule]]\nname = \"burst_{i}\"\nsource = \"sample\"\nwhen = \"b{i} > 0\"\nseverity = \"critical\"\n\
                 summary = \"burst {i}\"\n\n"
            )
        })
        .collect();
    // A long lease, renewed rarely: the leader keeps leading through the
    // hang below, and no renewal fails (and drops the link) meanwhile.
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ {} }}\n\n[[target]]\nname = \"lease\"\nurl = \"{}\"\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [ha]\nenabled = true\nlease_ttl = \"40s\"\nrenew_every = \"20s\"\ninstance_id = \"a\"\nlease_on = \"lease\"\n",
        watched.url(0),
        probes.join(", "),
        lease.url(0),
        hook.url()
    );
    let dir = engine_dir("500ms", &config, &[("burst", &rules)], &[]);
    let mut a = Redops::start(dir.path(), &[]);
    a.wait_log("HA: became the leader", Duration::from_secs(15));
    // Hang the store just after a renewal: the next one is 20 s away.
    let mut lease_conn = lease.conn();
    let renewed = wait_until(Duration::from_secs(25), Duration::from_millis(10), || {
        redis::cmd("PTTL")
            .arg("redops:ha:leader")
            .query::<i64>(&mut lease_conn)
            .is_ok_and(|ttl| ttl > 39_000)
    });
    assert!(renewed, "the lease was not renewed:\n{}", a.output());
    lease.process.pause().unwrap();

    let mut conn = watched.conn();
    let mut raise = redis::pipe();
    for i in 0..BURST {
        raise.cmd("RPUSH").arg(format!("burst:{i}")).arg("x").ignore();
    }
    raise.query::<()>(&mut conn).unwrap();
    let raised = Instant::now();
    let name = |i: usize| format!("burst_{i}");
    let all_paged = |r: &[Received]| (0..BURST).all(|i| !pages(r, &name(i)).is_empty());
    hook.wait_for(Duration::from_secs(15), all_paged);
    let took = raised.elapsed();
    lease.process.resume().unwrap();
    eprintln!("{BURST} alerts paged {took:?} after they were raised, with the lease store hung");
    // Each alert waits at most one ledger timeout (1 s) for its shared
    // start, and not for the alerts before it; delivery does not wait for a
    // store that just failed to answer. Waiting in turn, the burst took
    // over 6 s to align alone, then up to 2 s a delivery.
    assert!(
        took < Duration::from_secs(5),
        "{BURST} alerts took {took:?} to be paged with the lease store hung:\n{}",
        a.output()
    );
    assert!(
        a.output().contains("HA: alert start not shared"),
        "the store was hung, yet alignment did not fail:\n{}",
        a.output()
    );
    assert!(!a.output().contains("HA: stepped down"), "{}", a.output());
}
