//! The shipped rules and playbooks, compiled into the binary so that
//! `redops run --lab` works from any directory, with no checkout.

use std::fs;
use std::path::Path;

use super::process::LabError;

/// `rules/*.toml` at the repository root. A test fails when a file there is
/// missing from this list.
pub const RULES: &[(&str, &str)] = &[
    ("availability.toml", include_str!("../../rules/availability.toml")),
    ("cache.toml", include_str!("../../rules/cache.toml")),
    ("cluster.toml", include_str!("../../rules/cluster.toml")),
    ("evictions.toml", include_str!("../../rules/evictions.toml")),
    ("fragmentation.toml", include_str!("../../rules/fragmentation.toml")),
    ("memory.toml", include_str!("../../rules/memory.toml")),
    ("redops.toml", include_str!("../../rules/redops.toml")),
    ("schedules.toml", include_str!("../../rules/schedules.toml")),
    ("sentinel.toml", include_str!("../../rules/sentinel.toml")),
];

/// `playbooks/*.rhai` at the repository root, kept complete the same way.
pub const PLAYBOOKS: &[(&str, &str)] = &[
    ("backup.rhai", include_str!("../../playbooks/backup.rhai")),
    (
        "capacity_report.rhai",
        include_str!("../../playbooks/capacity_report.rhai"),
    ),
    ("redis_outage.rhai", include_str!("../../playbooks/redis_outage.rhai")),
    (
        "security_audit.rhai",
        include_str!("../../playbooks/security_audit.rhai"),
    ),
    ("warm_cache.rhai", include_str!("../../playbooks/warm_cache.rhai")),
    (
        "cleanup_backups.rhai",
        include_str!("../../playbooks/cleanup_backups.rhai"),
    ),
    (
        "optimize_memory.rhai",
        include_str!("../../playbooks/optimize_memory.rhai"),
    ),
    (
        "sentinel_failover.rhai",
        include_str!("../../playbooks/sentinel_failover.rhai"),
    ),
    ("restore.rhai", include_str!("../../playbooks/restore.rhai")),
    (
        "cluster_failover.rhai",
        include_str!("../../playbooks/cluster_failover.rhai"),
    ),
    ("verify_backup.rhai", include_str!("../../playbooks/verify_backup.rhai")),
];

/// Writes [`RULES`] into `<dir>/rules/` and [`PLAYBOOKS`] into
/// `<dir>/playbooks/`, overwriting, so an upgraded binary updates the lab.
/// Other files there are left alone.
pub fn write_to(dir: &Path) -> Result<(), LabError> {
    for (sub, files) in [("rules", RULES), ("playbooks", PLAYBOOKS)] {
        let target = dir.join(sub);
        fs::create_dir_all(&target).map_err(LabError::io(format!("Failed to create {}", target.display())))?;
        for (name, text) in files {
            let path = target.join(name);
            fs::write(&path, text).map_err(LabError::io(format!("Failed to write {}", path.display())))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(sub: &str, extension: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("Failed to read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(extension))
            .collect();
        names.sort();
        names
    }

    fn listed(files: &[(&str, &str)]) -> Vec<String> {
        let mut names: Vec<String> = files.iter().map(|(name, _)| name.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn every_shipped_rule_file_is_embedded() {
        assert_eq!(
            listed(RULES),
            shipped("rules", ".toml"),
            "add the new file to RULES in src/lab/embedded.rs"
        );
    }

    #[test]
    fn every_shipped_playbook_is_embedded() {
        assert_eq!(
            listed(PLAYBOOKS),
            shipped("playbooks", ".rhai"),
            "add the new file to PLAYBOOKS in src/lab/embedded.rs"
        );
    }

    #[test]
    fn write_to_overwrites_and_keeps_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let (name, text) = RULES[0];
        fs::create_dir_all(dir.path().join("rules")).unwrap();
        fs::write(dir.path().join("rules").join(name), "stale").unwrap();
        fs::write(dir.path().join("rules/mine.toml"), "mine").unwrap();

        write_to(dir.path()).unwrap();

        assert_eq!(fs::read_to_string(dir.path().join("rules").join(name)).unwrap(), text);
        assert_eq!(fs::read_to_string(dir.path().join("rules/mine.toml")).unwrap(), "mine");
        for (name, text) in PLAYBOOKS {
            assert_eq!(
                &fs::read_to_string(dir.path().join("playbooks").join(name)).unwrap(),
                text
            );
        }
    }
}
