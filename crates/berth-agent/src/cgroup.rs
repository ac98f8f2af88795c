//! Task-level CPU and memory limits: one cgroup per task, which Docker uses
//! as the parent of the task's containers (`--cgroup-parent`). Handles both
//! cgroup v1 (one hierarchy per controller) and v2 (unified), for Docker's
//! `cgroupfs` driver.

use std::io;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "berth";
const CFS_PERIOD_US: u64 = 100_000;

/// Where cgroups live and which layout they have.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    v2: bool,
}

impl Cgroups {
    /// The host's cgroup filesystem, if it is mounted and writable.
    pub fn detect() -> Option<Self> {
        Self::at(Path::new(ROOT))
    }

    fn at(root: &Path) -> Option<Self> {
        let v2 = root.join("cgroup.controllers").exists();
        let probe = if v2 {
            root.to_path_buf()
        } else {
            root.join("memory")
        };
        probe.is_dir().then(|| Self {
            root: root.to_path_buf(),
            v2,
        })
    }

    /// The `--cgroup-parent` of a task's containers.
    pub fn parent_for(task_id: &str) -> String {
        format!("/{PARENT}/{task_id}")
    }

    /// Creates the task's cgroup with its limits: CPU units become a CFS
    /// quota (1024 units = one CPU), memory a hard limit in MiB.
    pub fn create(
        &self,
        task_id: &str,
        cpu: Option<u32>,
        memory_mib: Option<u32>,
    ) -> io::Result<()> {
        let quota = cpu.map(|units| (u64::from(units) * CFS_PERIOD_US / 1024).max(1000));
        let memory = memory_mib.map(|mib| u64::from(mib) * 1024 * 1024);
        if self.v2 {
            let parent = self.root.join(PARENT);
            std::fs::create_dir_all(&parent)?;
            // Controllers must be delegated down to where the limits are set.
            for dir in [self.root.as_path(), parent.as_path()] {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory");
            }
            let group = parent.join(task_id);
            std::fs::create_dir_all(&group)?;
            if let Some(quota) = quota {
                std::fs::write(group.join("cpu.max"), format!("{quota} {CFS_PERIOD_US}"))?;
            }
            if let Some(memory) = memory {
                std::fs::write(group.join("memory.max"), memory.to_string())?;
            }
        } else {
            if let Some(quota) = quota {
                let group = self.root.join("cpu").join(PARENT).join(task_id);
                std::fs::create_dir_all(&group)?;
                std::fs::write(group.join("cpu.cfs_period_us"), CFS_PERIOD_US.to_string())?;
                std::fs::write(group.join("cpu.cfs_quota_us"), quota.to_string())?;
            }
            if let Some(memory) = memory {
                let group = self.root.join("memory").join(PARENT).join(task_id);
                std::fs::create_dir_all(&group)?;
                std::fs::write(group.join("memory.limit_in_bytes"), memory.to_string())?;
            }
        }
        Ok(())
    }

    /// Removes the task's cgroup once its processes are gone, in every
    /// controller (v1), groups the runtime left inside it first. A group
    /// that does not exist is not an error; one that still holds a process
    /// is (`EBUSY`), and is left for the caller to try again.
    pub fn remove(&self, task_id: &str) -> io::Result<()> {
        let dirs: Vec<PathBuf> = if self.v2 {
            vec![self.root.join(PARENT).join(task_id)]
        } else {
            std::fs::read_dir(&self.root)?
                .flatten()
                .map(|controller| controller.path().join(PARENT).join(task_id))
                .collect()
        };
        let mut result = Ok(());
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            if let Err(error) = remove_group(dir) {
                result = result.and(Err(error));
            }
        }
        result
    }
}

/// Removes a cgroup and the groups below it, deepest first. Only
/// directories are removed: a cgroup's files go with its directory.
fn remove_group(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_group(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_limits_are_written_per_controller() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("memory")).unwrap();
        std::fs::create_dir_all(root.path().join("cpu")).unwrap();
        let cgroups = Cgroups::at(root.path()).unwrap();
        assert!(!cgroups.v2);
        cgroups.create("t1", Some(512), Some(256)).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("cpu/berth/t1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("memory/berth/t1/memory.limit_in_bytes"), "268435456");
        assert_eq!(Cgroups::parent_for("t1"), "/berth/t1");
    }

    #[test]
    fn v2_limits_are_written_in_one_group() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory").unwrap();
        let cgroups = Cgroups::at(root.path()).unwrap();
        assert!(cgroups.v2);
        cgroups.create("t2", Some(2048), None).unwrap();
        let cpu_max = std::fs::read_to_string(root.path().join("berth/t2/cpu.max")).unwrap();
        assert_eq!(cpu_max, "200000 100000");
    }

    #[test]
    fn removal_takes_groups_inside_and_tolerates_missing_ones() {
        let root = tempfile::tempdir().unwrap();
        for controller in ["memory", "cpu"] {
            std::fs::create_dir_all(root.path().join(controller)).unwrap();
        }
        let cgroups = Cgroups::at(root.path()).unwrap();
        cgroups.create("t3", Some(256), Some(64)).unwrap();
        // A container's group the runtime left behind.
        std::fs::create_dir_all(root.path().join("memory/berth/t3/c0ffee")).unwrap();
        // A plain filesystem keeps files, which cgroupfs would not: clear them.
        for controller in ["memory", "cpu"] {
            for entry in std::fs::read_dir(root.path().join(controller).join("berth/t3")).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        cgroups.remove("t3").unwrap();
        assert!(!root.path().join("memory/berth/t3").exists());
        assert!(!root.path().join("cpu/berth/t3").exists());
        cgroups.remove("t3").unwrap();
        cgroups.remove("never-made").unwrap();
    }
}
