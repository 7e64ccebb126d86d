//! High availability with real processes: three `redops run` instances with
//! the same rules, each with its own state dir, elect one leader through a
//! lease in a real redis-server (or a Sentinel group's master). Only the
//! leader runs playbooks and delivers; a `kill -9` of the leader hands over
//! within the lease TTL, and across the takeover no playbook runs twice and
//! no notification is lost.

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
            "{config}\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[ha]\nenabled = true\nlease_ttl = \"{}s\"\ninstance_id = \"{id}\"\nlease_on = \"{lease_on}\"\n",
            TTL.as_secs(),
        );
        let dir = engine_dir("500ms", &config, &[("ha", rules)], &[("mark", MARK)]);
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
fn with_nobody_able_to_lead_pages_still_go_out_and_playbooks_do_not_run() {
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
    wait_for_leader(&mut lease.conn(), None, TTL * 2);

    lease.process.kill().unwrap();
    let mut conn = watched.conn();
    redis::cmd("RPUSH")
        .arg("ha:trigger:first")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    // Both go isolated after twice the TTL and page; neither remediates.
    let got = hook.wait_for(TTL * 4, |r| pages(r, "first").len() == 2);
    for i in &mut instances {
        i.redops.wait_log(
            "HA: lease store unreachable for twice the lease TTL",
            Duration::from_secs(1),
        );
    }
    std::thread::sleep(TTL);
    assert_eq!(
        counter(&mut conn, "ha:marker:first"),
        0,
        "a playbook ran with no leader"
    );
    assert!(pages(&got, "first").len() == 2, "{}", hook.describe());

    // The lease store back, one leader again, and only it acts.
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
    let follower = instances.iter_mut().find(|i| i.id != leader).unwrap();
    follower
        .redops
        .wait_log("HA: no longer isolated", Duration::from_secs(1));
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
