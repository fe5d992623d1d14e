//! Debian's kernels for the guests: find the newest unsigned image of a series in the
//! apt lists, `apt-get download` it, unpack it with `dpkg-deb -x`, and pick the modules
//! the guest needs (virtio disk and ext4) with their dependencies.
//!
//! Everything is cached under `target/vmtest/`: the `.deb` in `debs/`, the unpacked
//! tree in `kernels/<release>/`. Nothing downloaded is ever committed.

use crate::util;
use anyhow::{Context as _, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The series the matrix knows, as `--kernel` spells them, and the stem of their
/// package names (`linux-image-<stem><rest>-<deb arch>-unsigned`, `amd64` or `arm64`).
pub const SERIES: [(&str, &str); 2] = [("6.1", "6.1.0-"), ("6.12", "6.12.")];

/// Modules the guest loads (with their dependencies), in this order: the virtio PCI
/// transport (built in on 6.12, a module on 6.1), the disk, the checksum ext4 needs for
/// `metadata_csum` (requested by name, not a module dependency), and ext4.
pub const WANTED_MODULES: [&str; 4] = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"];

/// A kernel unpacked and ready to boot.
pub struct Kernel {
    /// `--kernel` name of its series (`6.1`).
    pub series: String,
    /// The package (`linux-image-6.1.0-57-amd64-unsigned`).
    pub package: String,
    /// `uname -r` in the guest (`6.1.0-57-amd64`).
    pub release: String,
    pub vmlinuz: PathBuf,
    /// Module files to load, in order (dependencies first), decompressed if need be.
    pub modules: Vec<PathBuf>,
}

/// The newest `linux-image-<stem>...-<deb_arch>-unsigned` of `names`: the plain flavour
/// only (not `cloud`, `rt` or `dbg`), newest by the numbers in its version.
pub fn newest(stem: &str, deb_arch: &str, names: &[&str]) -> Option<String> {
    let prefix = format!("linux-image-{stem}");
    let suffix = format!("-{deb_arch}-unsigned");
    names
        .iter()
        .filter_map(|n| {
            let rest = n.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
            // `57` (6.1.0-57) or `118+deb12` (6.12.118+deb12): digits, dots, `+deb`.
            let plain = rest.replace("+deb", ".");
            if plain.is_empty() || !plain.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return None;
            }
            let key: Vec<u64> = plain.split('.').filter_map(|p| p.parse().ok()).collect();
            Some((key, n.to_string()))
        })
        .max()
        .map(|(_, n)| n)
}

/// `uname -r` of a kernel package: `linux-image-6.1.0-57-amd64-unsigned` -> `6.1.0-57-amd64`.
pub fn release_of(package: &str) -> Option<&str> {
    package
        .strip_prefix("linux-image-")?
        .strip_suffix("-unsigned")
}

/// The names after `depends=` in a module's `.modinfo` section (found in the raw bytes
/// of the `.ko`: each entry there is a NUL-terminated `key=value` string).
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let mut out = Vec::new();
    for (i, w) in ko.windows(key.len()).enumerate() {
        // Only at the start of a .modinfo entry: after a NUL.
        if w != key || (i > 0 && ko[i - 1] != 0) {
            continue;
        }
        let start = i + key.len();
        let end = ko[start..]
            .iter()
            .position(|&b| b == 0)
            .map_or(ko.len(), |p| start + p);
        let list = String::from_utf8_lossy(&ko[start..end]);
        out.extend(
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_")),
        );
        break;
    }
    out
}

/// `wanted` and their dependencies, dependencies first; `deps` maps a module to what it
/// depends on. A module missing from `deps` is built in (the caller checked).
pub fn load_order(wanted: &[&str], deps: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    fn visit(
        m: &str,
        deps: &BTreeMap<String, Vec<String>>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(m.to_string()) {
            return;
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, seen, out);
        }
        if deps.contains_key(m) {
            out.push(m.to_string());
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for m in wanted {
        visit(m, deps, &mut seen, &mut out);
    }
    out
}

/// The package names apt knows for a series.
fn apt_names(stem: &str) -> Result<Vec<String>> {
    let out =
        util::output(Command::new("apt-cache").args(["pkgnames", &format!("linux-image-{stem}")]))?;
    Ok(out.lines().map(|l| l.trim().to_string()).collect())
}

/// Find, download (once) and unpack (once) the newest kernel of `series` for Debian's
/// architecture `deb_arch` (`amd64`, `arm64`: dpkg must know it, see `setup`).
pub fn fetch(series: &str, deb_arch: &str, cache: &Path) -> Result<Kernel> {
    let stem = SERIES
        .iter()
        .find(|(s, _)| *s == series)
        .map(|(_, stem)| *stem)
        .with_context(|| format!("unknown kernel series {series}"))?;
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let mut names = apt_names(stem)?;
    if newest(
        stem,
        deb_arch,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .is_none()
    {
        // A fresh machine may never have read the lists.
        util::run(Command::new("apt-get").args(["update", "-q"]))?;
        names = apt_names(stem)?;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let package = newest(stem, deb_arch, &refs).with_context(|| {
        format!(
            "no linux-image-{stem}*-{deb_arch}-unsigned package in the apt lists \
             (`apt-cache pkgnames linux-image-{stem}`); is this Debian with bookworm(-security), \
             and does dpkg know {deb_arch} (`dpkg --print-foreign-architectures`; \
             `cargo xtask setup` adds arm64)?"
        )
    })?;
    let release = release_of(&package)
        .context("kernel package name")?
        .to_string();
    let deb = match cached_deb(&debs, &package)? {
        Some(d) => {
            println!("[vmtest] {package}: cached");
            d
        }
        None => {
            println!("[vmtest] {package}: downloading ...");
            util::run(
                Command::new("apt-get")
                    .current_dir(&debs)
                    .args(["download", "-q", &package]),
            )?;
            cached_deb(&debs, &package)?.with_context(|| {
                format!(
                    "apt-get download {package} left no .deb in {}",
                    debs.display()
                )
            })?
        }
    };
    let root = cache.join("kernels").join(&release);
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.exists() {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        if !vmlinuz.exists() {
            bail!("{} has no {}", deb.display(), vmlinuz.display());
        }
    }
    let modules = modules(&root, &release)?;
    Ok(Kernel {
        series: series.to_string(),
        package,
        release,
        vmlinuz,
        modules,
    })
}

fn cached_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// The module files for [`WANTED_MODULES`], in load order, `.ko.xz` decompressed next to
/// the original (busybox's insmod loads plain `.ko` files only).
fn modules(root: &Path, release: &str) -> Result<Vec<PathBuf>> {
    let dir = root.join("lib/modules").join(release);
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    walk(&dir.join("kernel"), &mut |p| {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if let Some(stem) = name
            .strip_suffix(".ko")
            .or_else(|| name.strip_suffix(".ko.xz"))
        {
            files.insert(stem.replace('-', "_"), p.to_path_buf());
        }
    })?;
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let is_builtin = |m: &str| {
        builtin.lines().any(|l| {
            l.rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".ko"))
                .is_some_and(|f| f.replace('-', "_") == m)
        })
    };
    // Read every module reachable from the wanted ones.
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut plain: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut todo: Vec<String> = WANTED_MODULES.iter().map(|s| s.to_string()).collect();
    while let Some(m) = todo.pop() {
        if deps.contains_key(&m) {
            continue;
        }
        let Some(src) = files.get(&m) else {
            if is_builtin(&m) {
                continue;
            }
            bail!("module {m} is neither in {} nor built in", dir.display());
        };
        let ko = decompressed(src)?;
        let bytes = std::fs::read(&ko).with_context(|| format!("reading {}", ko.display()))?;
        let d = module_depends(&bytes);
        todo.extend(d.iter().cloned());
        deps.insert(m.clone(), d);
        plain.insert(m, ko);
    }
    Ok(load_order(&WANTED_MODULES, &deps)
        .into_iter()
        .filter_map(|m| plain.remove(&m))
        .collect())
}

/// `x.ko` itself, or `x.ko.xz` decompressed to `x.ko` beside it (once).
fn decompressed(src: &Path) -> Result<PathBuf> {
    let Some(ko) = src.to_str().and_then(|s| s.strip_suffix(".xz")) else {
        return Ok(src.to_path_buf());
    };
    let ko = PathBuf::from(ko);
    if !ko.exists() {
        util::run(Command::new("xz").args(["-d", "-k", "-f"]).arg(src))?;
    }
    Ok(ko)
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(&p, f)?;
        } else {
            f(&p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_plain_image_of_each_series() {
        let names = [
            "linux-image-6.1.0-9-amd64-unsigned",
            "linux-image-6.1.0-57-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-57-rt-amd64-unsigned",
            "linux-image-6.1.0-57-amd64-dbg",
            "linux-image-6.1.0-56-amd64-unsigned",
            "linux-image-6.12.9+deb12-amd64-unsigned",
            "linux-image-6.12.118+deb12-amd64-unsigned",
            "linux-image-6.12.117+deb12-rt-amd64-unsigned",
            "linux-image-6.12.111+deb12-amd64-unsigned",
        ];
        assert_eq!(
            newest("6.1.0-", "amd64", &names).as_deref(),
            Some("linux-image-6.1.0-57-amd64-unsigned")
        );
        assert_eq!(
            newest("6.12.", "amd64", &names).as_deref(),
            Some("linux-image-6.12.118+deb12-amd64-unsigned")
        );
        assert_eq!(newest("5.15.", "amd64", &names), None);
        // The other architecture's packages are not this one's.
        assert_eq!(newest("6.1.0-", "arm64", &names), None);
        let arm = [
            "linux-image-6.12.118+deb12-arm64-unsigned",
            "linux-image-6.12.118+deb12-cloud-arm64-unsigned",
            "linux-image-6.12.118+deb12-amd64-unsigned",
        ];
        assert_eq!(
            newest("6.12.", "arm64", &arm).as_deref(),
            Some("linux-image-6.12.118+deb12-arm64-unsigned")
        );
        assert_eq!(
            release_of("linux-image-6.12.118+deb12-amd64-unsigned"),
            Some("6.12.118+deb12-amd64")
        );
    }

    #[test]
    fn depends_from_modinfo_and_load_order() {
        let ko = b"\x7fELF...\0license=GPL\0depends=jbd2,mbcache,crc16\0retpoline=Y\0name=ext4\0";
        assert_eq!(module_depends(ko), ["jbd2", "mbcache", "crc16"]);
        assert!(module_depends(b"\0depends=\0name=crc16\0").is_empty());
        // Not at the start of an entry: not the modinfo key.
        assert!(module_depends(b"\0xdepends=a\0").is_empty());

        let mut deps = BTreeMap::new();
        deps.insert(
            "ext4".to_string(),
            vec!["jbd2".into(), "mbcache".into(), "crc16".into()],
        );
        deps.insert("jbd2".to_string(), vec![]);
        deps.insert("mbcache".to_string(), vec![]);
        deps.insert("crc16".to_string(), vec![]);
        deps.insert(
            "virtio_blk".to_string(),
            vec!["virtio".into(), "virtio_ring".into()],
        );
        deps.insert("virtio".to_string(), vec![]);
        deps.insert("virtio_ring".to_string(), vec![]);
        // virtio_pci is built in here: not in `deps`, not loaded.
        assert_eq!(
            load_order(&["virtio_pci", "virtio_blk", "ext4"], &deps),
            [
                "virtio",
                "virtio_ring",
                "virtio_blk",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ]
        );
    }
}
