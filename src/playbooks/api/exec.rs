//! `exec(name, args)`: runs a program named in the config's `[exec]`
//! allowlist, never a shell, with a timeout and capped output.
//!
//! A playbook names an entry; the program and its first arguments come from
//! the config, and the playbook's arguments are appended as they are. In a
//! dry run the call is recorded, not made.
//!
//! The program gets an empty environment plus its entry's `env`: redops's
//! own holds the config's secrets. It runs in a process group of its own, and
//! at the timeout the whole group is killed, so a process it started in the
//! background cannot hold the run (or its output pipe) open past it.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use crate::config::ExecConfig;
use crate::config::exec::DEFAULT_PATH;
use crate::playbooks::context;

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

/// Bytes of stdout and of stderr kept; the rest is read and dropped so the
/// program never blocks on a full pipe.
const MAX_OUTPUT: usize = 64 * 1024;

pub fn register(engine: &mut Engine) {
    engine.register_fn("exec", |name: &str| exec(name, Array::new()));
    engine.register_fn("exec", |name: &str, args: Array| exec(name, args));
}

fn exec(name: &str, args: Array) -> RhaiResult {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (entry, dry_run, scripted, remaining) = context::with_run(|run| {
        let entry = run.ctx.host.exec.get(name).cloned();
        (entry, run.ctx.dry_run, run.ctx.scripted.is_some(), run.remaining())
    })?;
    let detail = format!("exec {name} {}", args.join(" ")).trim_end().to_owned();
    let Some(entry) = entry else {
        let known = context::with_run(|run| run.ctx.host.exec.keys().cloned().collect::<Vec<_>>())?;
        let listed = if known.is_empty() {
            "it is empty".to_owned()
        } else {
            format!("it has: {}", known.join(", "))
        };
        let error =
            format!("`{name}` is not in the [exec] allowlist ({listed}); add it as [exec.{name}] in the config");
        record(detail, false, format!("denied: {error}"))?;
        return Err(format!("exec: {error}").into());
    };
    if dry_run || scripted {
        let why = if dry_run { "dry run" } else { "redops test" };
        record(detail, true, format!("not run ({why})"))?;
        return Ok(result(0, String::new(), String::new()));
    }
    context::fence("exec", &detail)?;
    let timeout = entry.timeout.min(remaining);
    match run(&entry, &args, timeout) {
        Ok((status, stdout, stderr)) => {
            record(detail, false, format!("exit {status}"))?;
            Ok(result(status, stdout, stderr))
        }
        Err(error) => {
            record(detail, false, format!("failed: {error}"))?;
            Err(format!("exec {name}: {error}").into())
        }
    }
}

fn record(detail: String, dry_run: bool, outcome: String) -> Result<(), Box<EvalAltResult>> {
    context::with_run(|run| run.record("exec", detail, dry_run, outcome))?;
    Ok(())
}

fn result(status: i64, stdout: String, stderr: String) -> Dynamic {
    let mut m = Map::new();
    m.insert("status".into(), status.into());
    m.insert("stdout".into(), stdout.into());
    m.insert("stderr".into(), stderr.into());
    m.into()
}

/// Runs the program; its exit status (or -1 when a signal ended it) and
/// its output. Its process group is killed when `timeout` passes, whether
/// the program itself still runs or only something it started that holds
/// its output open.
fn run(entry: &ExecConfig, args: &[String], timeout: Duration) -> Result<(i64, String, String), String> {
    let mut cmd = Command::new(&entry.command);
    cmd.args(&entry.args)
        .args(args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(&entry.env)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &entry.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", entry.command.display()))?;
    let stdout = child.stdout.take().map(capture);
    let stderr = child.stderr.take().map(capture);
    let started = Instant::now();
    let killed = |child: &mut std::process::Child, what: &str| {
        kill_group(child);
        let _ = child.wait();
        format!("killed after {timeout:?} (its timeout){what}")
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => return Err(killed(&mut child, "")),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("cannot wait for it: {e}"));
            }
        }
    };
    // The program is gone; its output ends when the last process holding
    // the pipes (a background child of its own) closes them.
    while [&stdout, &stderr]
        .iter()
        .any(|h| h.as_ref().is_some_and(|h| !h.is_finished()))
    {
        if started.elapsed() >= timeout {
            return Err(killed(
                &mut child,
                &format!(
                    ": it exited {}, but a process it started still held its output open",
                    status.code().map_or("on a signal".to_owned(), |c| c.to_string())
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let join = |h: Option<std::thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok((status.code().map_or(-1, i64::from), join(stdout), join(stderr)))
}

/// SIGKILL to the child's process group (its id, as `process_group(0)` made
/// it), and to the child itself should that fail.
fn kill_group(child: &mut std::process::Child) {
    let Ok(group) = libc::pid_t::try_from(child.id()) else {
        let _ = child.kill();
        return;
    };
    // SAFETY: killpg only sends a signal. `group` is the group this child
    // leads; its id is not handed out again while a member lives (the only
    // case where a killed group's id could be stale is when every member has
    // left it, and then only after the pid space wrapped since the spawn).
    if unsafe { libc::killpg(group, libc::SIGKILL) } != 0 {
        let error = std::io::Error::last_os_error();
        // ESRCH: the group is gone already, nothing left to kill.
        if error.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pid = group, %error, "Cannot kill an exec program's process group; killing the program only");
        }
        let _ = child.kill();
    }
}

fn capture(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut truncated = false;
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = MAX_OUTPUT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
            truncated |= n > room;
        }
        let mut text = String::from_utf8_lossy(&kept).into_owned();
        if truncated {
            text.push_str("\n… (output cut at 64 KiB)");
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(command: &str, args: &[&str], timeout: Duration) -> ExecConfig {
        ExecConfig {
            command: command.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            timeout,
            cwd: None,
            env: Default::default(),
        }
    }

    #[test]
    fn arguments_reach_the_program_without_a_shell() {
        let e = entry("/bin/echo", &["warm"], Duration::from_secs(5));
        let (status, stdout, _) = run(&e, &["--critical; rm -rf /".into()], Duration::from_secs(5)).unwrap();
        assert_eq!(status, 0);
        assert_eq!(stdout, "warm --critical; rm -rf /\n");
    }

    #[test]
    fn a_program_past_its_timeout_is_killed() {
        let e = entry("/bin/sleep", &["10"], Duration::from_millis(200));
        let started = Instant::now();
        let err = run(&e, &[], Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn the_program_sees_only_its_entrys_environment() {
        let mut e = entry("/usr/bin/env", &[], Duration::from_secs(5));
        e.env.insert("DJANGO_SETTINGS_MODULE".into(), "app.settings".into());
        let (status, stdout, _) = run(&e, &[], Duration::from_secs(5)).unwrap();
        assert_eq!(status, 0);
        let mut lines: Vec<&str> = stdout.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            ["DJANGO_SETTINGS_MODULE=app.settings", &format!("PATH={DEFAULT_PATH}")]
        );
    }

    #[test]
    fn a_background_child_holding_the_output_is_killed_at_the_timeout() {
        let e = entry(
            "/bin/sh",
            &["-c", "sleep 30 & echo started"],
            Duration::from_millis(300),
        );
        let started = Instant::now();
        let err = run(&e, &[], Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("still held its output open"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }
}
