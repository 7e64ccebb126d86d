//! TLS to Redis: a Debian `redis-server` serving only TLS (`port 0`,
//! `tls-port`), with a certificate from a throwaway CA and an ACL user with
//! a password, watched through `rediss://` with the CA in `tls_ca`.

mod harness;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{Redops, TestCerts, WebhookReceiver, alerts, engine_dir, make_certs, run_redops, wait_until, write_file};

/// Only ever in the environment of redops and in redis.conf; any output
/// that holds it leaked it.
const PASSWORD: &str = "tls-pw-9c1e77ab41d2";
const USER: &str = "redops";

/// A TLS-only redis-server, killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start(certs: &TestCerts) -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = redops::lab::process::free_port().unwrap();
        let conf = format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
             tls-auth-clients no\nsave \"\"\nappendonly no\ndir {}\nlogfile redis.log\n\
             notify-keyspace-events E$\nuser default off\nuser {USER} on >{PASSWORD} ~* &* +@all\n",
            certs.cert.display(),
            certs.key.display(),
            certs.ca.display(),
            dir.path().display()
        );
        write_file(dir.path(), "redis.conf", &conf);
        let child = Command::new("redis-server")
            .arg(dir.path().join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = TlsRedis { child, port, dir };
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            redis.log().contains("Ready to accept connections")
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            ready,
            "redis-server did not serve TLS on {port} (is it built with TLS?); log:\n{}",
            redis.log()
        );
        redis
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// A client that trusts `ca` and logs in as the ACL user.
    fn conn(&self, ca: &Path) -> redis::Connection {
        let url = format!("rediss://{USER}:{PASSWORD}@127.0.0.1:{}/0", self.port);
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(fs::read(ca).unwrap()),
        };
        redis::Client::build_with_tls(url, certificates)
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("TLS connection to {} failed: {e}\n{}", self.port, self.log()))
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RULES: &str = r#"
[[rule]]
name = "tls_sampled"
source = "sample"
when = "redis_up == 1 && connected_clients >= 1"
severity = "info"
summary = "sampled {{ target }} over TLS"

[[rule]]
name = "tls_keyspace"
source = "keyspace"
events = ["set"]
keys = "tls:*"
window = "30s"
when = "count >= 3"
severity = "info"
summary = "{{ count }} keys set on {{ target }} over TLS"

[[rule]]
name = "tls_down"
source = "health"
when = "redis_up == 0"
severity = "critical"
summary = "{{ target }} unreachable: {{ reason }}"
"#;

fn config(port: u16, ca: &Path, hook: &WebhookReceiver) -> String {
    format!(
        "[[target]]\nname = \"secure\"\nurl = \"rediss://{USER}@127.0.0.1:{port}/0\"\n\
         password = \"${{REDIS_TLS_PASSWORD}}\"\ntls_ca = \"{}\"\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        ca.display(),
        hook.url()
    )
}

fn assert_no_password(what: &str, text: &str) {
    assert!(!text.contains(PASSWORD), "{what} shows the password:\n{text}");
}

#[test]
fn a_tls_only_server_with_an_acl_user_is_sampled_and_subscribed_through_its_ca() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_certs(certs_dir.path());
    let redis = TlsRedis::start(&certs);
    let hook = WebhookReceiver::start();
    let dir = engine_dir("300ms", &config(redis.port, &certs.ca, &hook), &[("tls", RULES)], &[]);

    let check = run_redops(
        &["check", "--config", &dir.path().join("redops.toml").to_string_lossy()],
        &[("REDIS_TLS_PASSWORD", PASSWORD)],
    );
    let check_output = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "redops check failed:\n{check_output}");
    assert_no_password("redops check", &check_output);

    let mut redops = Redops::start_with_env(dir.path(), &[], &[("REDIS_TLS_PASSWORD", PASSWORD)]);
    redops.wait_log("Engine started", Duration::from_secs(10));
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "tls_sampled", "firing").is_empty()
    });
    assert_eq!(
        alerts(&got, "tls_sampled", "firing")[0].body["summary"],
        "sampled secure over TLS"
    );

    // Keyspace notifications come over a TLS pub/sub connection too.
    redops.wait_log("Keyspace subscription active", Duration::from_secs(10));
    let mut conn = redis.conn(&certs.ca);
    for i in 0..3 {
        let _: () = redis::cmd("SET")
            .arg(format!("tls:{i}"))
            .arg(i)
            .query(&mut conn)
            .unwrap();
    }
    let got = hook.wait_for(Duration::from_secs(10), |r| {
        !alerts(r, "tls_keyspace", "firing").is_empty()
    });
    assert_eq!(
        alerts(&got, "tls_keyspace", "firing")[0].body["summary"],
        "3 keys set on secure over TLS"
    );

    // redops logged in as the ACL user, not as `default` (which is off).
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).unwrap();
    assert!(
        clients.lines().filter(|l| l.contains(&format!("user={USER}"))).count() >= 3,
        "redops's connections (sampler, subscriber) use the ACL user:\n{clients}"
    );

    assert!(redops.terminate().success(), "{}", redops.output());
    assert_no_password("the engine's output", &redops.output());
    assert_no_password("the webhook bodies", &hook.describe());
}

#[test]
fn a_wrong_ca_fails_with_a_clear_error_naming_the_target() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_certs(certs_dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let other = make_certs(other_dir.path());
    let redis = TlsRedis::start(&certs);
    let hook = WebhookReceiver::start();
    let dir = engine_dir("300ms", &config(redis.port, &other.ca, &hook), &[("tls", RULES)], &[]);
    let mut redops = Redops::start_with_env(dir.path(), &[], &[("REDIS_TLS_PASSWORD", PASSWORD)]);
    let output = redops.wait_log("Target unreachable", Duration::from_secs(10));
    let line = output
        .lines()
        .find(|l| l.contains("Target unreachable"))
        .unwrap()
        .to_owned();
    assert!(line.contains("target=secure"), "the error names the target: {line}");
    assert!(
        line.to_ascii_lowercase().contains("certificate"),
        "the error says the certificate is the problem: {line}"
    );
    // The engine goes on and says the target is down.
    let got = hook.wait_for(Duration::from_secs(15), |r| !alerts(r, "tls_down", "firing").is_empty());
    let summary = alerts(&got, "tls_down", "firing")[0].body["summary"].to_string();
    assert!(summary.contains("certificate"), "{summary}");
    assert!(
        alerts(&got, "tls_sampled", "firing").is_empty(),
        "nothing was sampled through a CA that does not sign the server"
    );
    assert!(redops.is_running(), "{}", redops.output());
    assert!(redops.terminate().success(), "{}", redops.output());
    assert_no_password("the engine's output", &redops.output());

    // An unreadable CA file is a config error, at check time, naming the target.
    let missing = dir.path().join("missing-ca.pem");
    let broken = config(redis.port, &missing, &hook);
    write_file(
        dir.path(),
        "redops.toml",
        &format!("[engine]\nrules_dir = \"rules\"\nplaybooks_dir = \"playbooks\"\nstate_dir = \"state\"\n\n{broken}"),
    );
    let check = run_redops(
        &["check", "--config", &dir.path().join("redops.toml").to_string_lossy()],
        &[("REDIS_TLS_PASSWORD", PASSWORD)],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(check.status.code(), Some(2), "{text}");
    assert!(
        text.contains("target `secure`: cannot read tls_ca") && text.contains("missing-ca.pem"),
        "{text}"
    );
    assert_no_password("redops check", &text);
}
