//! What a daemon install needs: the systemd unit passes `systemd-analyze
//! verify`, and shell completions and the man page come out of the binary.

mod harness;

use std::fs;

use harness::run_redops;

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let Some(analyze) = harness::required_tool("systemd-analyze") else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = fs::read_to_string(root.join("config/systemd/redops.service")).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=redops",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(hardening), "the unit lacks {hardening}");
    }
    // verify checks that ExecStart's program exists: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_redops");
    let copy = dir.path().join("redops.service");
    fs::write(&copy, unit.replace("/usr/bin/redops", bin)).unwrap();
    // The man page it names comes with the .deb, not with this checkout.
    let out = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Messages about the host's own units (this machine may not boot with
    // systemd) are not about ours.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("redops.service")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef redops"),
        ("fish", "complete -c redops"),
    ] {
        let out = run_redops(&["completions", shell], &[]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell} completions lack {marker:?}");
        for sub in ["lab", "sentinel", "playbook", "silence"] {
            assert!(text.contains(sub), "{shell} completions do not know `{sub}`");
        }
    }
    let out = run_redops(&["man"], &[]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH redops 1"),
        "not a man page:\n{page}"
    );
    assert!(page.contains("sentinel"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let out = run_redops(&["man", "--dir", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["redops.1", "redops-run.1", "redops-lab.1"] {
        assert!(dir.path().join(page).is_file(), "{page} not written");
    }
}
