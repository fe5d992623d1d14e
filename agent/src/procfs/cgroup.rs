//! A process's memory cgroup (v1's memory controller or v2), its limit and usage, and the
//! container and Kubernetes pod its path names. Parsers are pure and tested on the path
//! shapes of docker, containerd, CRI-O, podman and kubelet; the readers are thin.
use std::path::{Path, PathBuf};

/// A v1 limit at or above this is "no limit" (the kernel's default is 2^63 rounded down
/// to a page).
const UNLIMITED: u64 = 1 << 62;

/// Which cgroup interface the memory figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One line of /proc/PID/cgroup: `ID:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctl, path) = (it.next()?, it.next()?, it.next()?);
            Some(Membership {
                controllers: ctl
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// A cgroup file system mount: its root within the hierarchy and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub root: String,
    pub point: PathBuf,
}

/// The v1 memory controller's mount and the cgroup2 mount, from /proc/self/mountinfo.
pub fn parse_mountinfo(text: &str) -> (Option<Mount>, Option<Mount>) {
    let (mut v1, mut v2) = (None, None);
    for l in text.lines() {
        let Some((pre, post)) = l.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = pre.split(' ').collect();
        let g: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (f.get(3), f.get(4), g.first()) else {
            continue;
        };
        let m = Mount {
            root: unescape(root),
            point: PathBuf::from(unescape(point)),
        };
        match *fstype {
            "cgroup2" if v2.is_none() => v2 = Some(m),
            "cgroup"
                if g.get(2)
                    .is_some_and(|o| o.split(',').any(|o| o == "memory")) =>
            {
                v1 = Some(m)
            }
            _ => {}
        }
    }
    (v1, v2)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Where a cgroup's files are: the mount point plus the path below the mount's root.
pub fn cgroup_dir(m: &Mount, path: &str) -> Option<PathBuf> {
    let rel = path
        .strip_prefix(m.root.trim_end_matches('/'))
        .unwrap_or(path);
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(m.point.join(rel))
}

/// A process's memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemCgroup {
    pub version: Version,
    /// The path as /proc/PID/cgroup gives it (names the container).
    pub path: String,
    pub dir: PathBuf,
}

/// The memory cgroup of `pid`: v1's memory controller when it is mounted, else v2.
pub fn memory_cgroup(pid: u32) -> Option<MemCgroup> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    pick(&parse_proc_cgroup(&own), &parse_mountinfo(&mounts))
}

pub fn pick(lines: &[Membership], mounts: &(Option<Mount>, Option<Mount>)) -> Option<MemCgroup> {
    if let Some(m) = &mounts.0
        && let Some(l) = lines
            .iter()
            .find(|l| l.controllers.iter().any(|c| c == "memory"))
    {
        return Some(MemCgroup {
            version: Version::V1,
            path: l.path.clone(),
            dir: cgroup_dir(m, &l.path)?,
        });
    }
    let m = mounts.1.as_ref()?;
    let l = lines.iter().find(|l| l.controllers.is_empty())?;
    let dir = cgroup_dir(m, &l.path)?;
    // v2 without the memory controller enabled there has no memory.current.
    dir.join("memory.current").exists().then(|| MemCgroup {
        version: Version::V2,
        path: l.path.clone(),
        dir,
    })
}

/// A cgroup's memory figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// None: no limit set.
    pub limit: Option<u64>,
    pub usage: u64,
    /// The cgroup's own high-water mark (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak` since 5.19), when it has one.
    pub max: Option<u64>,
}

/// `max` or a number (v2), or a number that may mean "no limit" (v1).
pub fn parse_limit(s: &str) -> Option<Option<u64>> {
    let s = s.trim();
    if s == "max" {
        return Some(None);
    }
    let v: u64 = s.parse().ok()?;
    Some((v < UNLIMITED).then_some(v))
}

pub fn read_usage(cg: &MemCgroup) -> Option<Usage> {
    let read = |f: &str| std::fs::read_to_string(cg.dir.join(f)).ok();
    let (limit, usage, max) = match cg.version {
        Version::V1 => (
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
            "memory.max_usage_in_bytes",
        ),
        Version::V2 => ("memory.max", "memory.current", "memory.peak"),
    };
    Some(Usage {
        limit: parse_limit(&read(limit)?)?,
        usage: read(usage)?.trim().parse().ok()?,
        max: read(max).and_then(|m| m.trim().parse().ok()),
    })
}

/// The host's memory: (MemTotal, MemTotal − MemAvailable), in bytes.
pub fn host_memory() -> Option<(u64, u64)> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kb = |key: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    };
    let total = kb("MemTotal:")? * 1024;
    let avail = kb("MemAvailable:")? * 1024;
    Some((total, total.saturating_sub(avail)))
}

/// The container a cgroup path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// docker, containerd, cri-o or podman.
    pub runtime: &'static str,
    /// The 64-hex-digit container id.
    pub id: String,
    /// The Kubernetes pod's UID, when the path is under kubepods.
    pub pod_uid: Option<String>,
}

fn hex64(s: &str) -> Option<&str> {
    let s = s.get(..64)?;
    s.bytes().all(|b| b.is_ascii_hexdigit()).then_some(s)
}

/// The container and pod of a cgroup path, for these shapes:
/// - docker: `/docker/ID`, `/system.slice/docker-ID.scope`
/// - containerd (Kubernetes): `/kubepods/burstable/podUID/ID`,
///   `/kubepods.slice/…/kubepods-burstable-podUID.slice/cri-containerd-ID.scope`
/// - CRI-O: `…/crio-ID.scope`, `/kubepods/…/podUID/crio-ID`
/// - podman: `/libpod_parent/libpod-ID`, `…/libpod-ID.scope`
pub fn container_of(path: &str) -> Option<Container> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut found: Option<(&'static str, String)> = None;
    for (i, c) in comps.iter().enumerate() {
        let c = c.strip_suffix(".scope").unwrap_or(c);
        let shaped = [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
        ]
        .iter()
        .find_map(|(p, rt)| Some((*rt, hex64(c.strip_prefix(p)?)?.to_string())));
        if let Some(f) = shaped {
            found = Some(f);
        } else if let Some(id) = hex64(c).filter(|_| c.len() == 64) {
            let rt = match comps.get(i.wrapping_sub(1)) {
                Some(&"docker") => "docker",
                _ if comps.iter().any(|c| c.starts_with("kubepods")) => "containerd",
                _ => "docker",
            };
            found = Some((rt, id.to_string()));
        }
    }
    let (runtime, id) = found?;
    let pod_uid = comps.iter().find_map(|c| {
        let c = c.strip_suffix(".slice").unwrap_or(c);
        let uid = c
            .rsplit_once("-pod")
            .map(|x| x.1)
            .or(c.strip_prefix("pod"))?;
        let uid = uid.replace('_', "-");
        (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
    });
    Some(Container {
        runtime,
        id,
        pod_uid,
    })
}

/// Where podman keeps its containers' state (their names).
const PODMAN_STORAGE: &str = "/var/lib/containers/storage";

/// How a container is named to people: its name when the runtime's state has it
/// (podman), else the runtime and the id's first 12 digits (`docker 4f2d7c1e9a8b`).
pub fn display_name(c: &Container) -> String {
    let named = match c.runtime {
        "podman" => podman_name(&c.id, Path::new(PODMAN_STORAGE)),
        _ => None,
    };
    named.unwrap_or_else(|| format!("{} {}", c.runtime, &c.id[..12]))
}

/// The container `pid` runs in (from its memory cgroup's path), and its name.
pub fn container_of_pid(pid: u32) -> Option<(Container, String)> {
    let c = container_of(&memory_cgroup(pid)?.path)?;
    let name = display_name(&c);
    Some((c, name))
}

/// A podman container's name from its storage's state (`containers.json`), if there.
pub fn podman_name(id: &str, storage: &Path) -> Option<String> {
    let text = std::fs::read_to_string(storage.join("overlay-containers/containers.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.as_array()?
        .iter()
        .find(|c| c["id"].as_str() == Some(id))?["names"]
        .as_array()?
        .first()?
        .as_str()
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f2d7c1e9a8b3c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
    const POD: &str = "0b6a7c2e-1f3d-4e5a-9b8c-7d6e5f4a3b2c";

    #[test]
    fn proc_cgroup_v1_and_v2_lines() {
        let l = parse_proc_cgroup("12:memory:/docker/abc\n4:cpu,cpuacct:/x\n0::/user.slice\n");
        assert_eq!(l[0].controllers, ["memory"]);
        assert_eq!(l[0].path, "/docker/abc");
        assert_eq!(l[1].controllers, ["cpu", "cpuacct"]);
        assert!(l[2].controllers.is_empty());
        assert_eq!(l[2].path, "/user.slice");
    }

    #[test]
    fn mounts_of_this_machine_and_of_a_v2_host() {
        // This machine: hybrid, v1 memory plus an empty v2 mount.
        let hybrid = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                      40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                      33 31 0:30 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        let (v1, v2) = parse_mountinfo(hybrid);
        assert_eq!(v1.unwrap().point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(v2.unwrap().point, PathBuf::from("/sys/fs/cgroup/unified"));
        let pure = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let (v1, v2) = parse_mountinfo(pure);
        assert!(v1.is_none());
        assert_eq!(v2.unwrap().point, PathBuf::from("/sys/fs/cgroup"));
    }

    #[test]
    fn v1_memory_is_picked_and_joined_below_the_mount_root() {
        let lines = parse_proc_cgroup(&format!("4:memory:/libpod_parent/libpod-{ID}\n0::/\n"));
        let mounts = (
            Some(Mount {
                root: "/".into(),
                point: "/sys/fs/cgroup/memory".into(),
            }),
            None,
        );
        let cg = pick(&lines, &mounts).unwrap();
        assert_eq!(cg.version, Version::V1);
        assert_eq!(
            cg.dir,
            PathBuf::from(format!("/sys/fs/cgroup/memory/libpod_parent/libpod-{ID}"))
        );
        // Inside a cgroup namespace the mount's root is the namespace's.
        let m = Mount {
            root: "/kubepods/pod1".into(),
            point: "/sys/fs/cgroup/memory".into(),
        };
        assert_eq!(
            cgroup_dir(&m, "/kubepods/pod1/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/abc"))
        );
        assert_eq!(cgroup_dir(&m, "/../etc"), None);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), Some(None));
        assert_eq!(parse_limit("9223372036854771712\n"), Some(None));
        assert_eq!(parse_limit("209715200\n"), Some(Some(209_715_200)));
        assert_eq!(parse_limit("x"), None);
        assert_eq!(
            parse_meminfo(
                "MemTotal:       24576000 kB\nMemFree: 1 kB\nMemAvailable:   20000000 kB\n"
            ),
            Some((24_576_000 * 1024, 4_576_000 * 1024))
        );
    }

    #[test]
    fn container_path_shapes() {
        let c = |p: &str| container_of(p).map(|c| (c.runtime, c.id, c.pod_uid));
        let id = ID.to_string();
        assert_eq!(
            c(&format!("/docker/{ID}")),
            Some(("docker", id.clone(), None))
        );
        assert_eq!(
            c(&format!("/system.slice/docker-{ID}.scope")),
            Some(("docker", id.clone(), None))
        );
        assert_eq!(
            c(&format!("/kubepods/burstable/pod{POD}/{ID}")),
            Some(("containerd", id.clone(), Some(POD.into())))
        );
        let pod_ = POD.replace('-', "_");
        assert_eq!(
            c(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_}.slice/cri-containerd-{ID}.scope"
            )),
            Some(("containerd", id.clone(), Some(POD.into())))
        );
        assert_eq!(
            c(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice/crio-{ID}.scope"
            )),
            Some(("cri-o", id.clone(), Some(POD.into())))
        );
        assert_eq!(
            c(&format!("/libpod_parent/libpod-{ID}")),
            Some(("podman", id.clone(), None))
        );
        assert_eq!(
            c(&format!("/machine.slice/libpod-{ID}.scope/container")),
            Some(("podman", id, None))
        );
        assert_eq!(c("/user.slice/user-1000.slice/session-2.scope"), None);
        assert_eq!(c("/process_api/94562e6975fbb4411c6abeddab46fb96"), None);
    }
}
