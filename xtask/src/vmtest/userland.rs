//! The user space of a foreign-architecture guest, from Debian's own packages: busybox
//! (static), `redis-server`/`redis-cli`/`redis-benchmark`, `strace`, and the shared
//! libraries they need. The `.deb`s are fetched with `apt-get download NAME:<arch>` and
//! unpacked with `dpkg-deb -x` into one tree (never installed on the host); `ldd`
//! cannot run a foreign binary, so a binary's libraries are found from its ELF headers
//! (`readelf`: the `NEEDED` entries and the program interpreter) inside that tree.
//!
//! Cached under `target/vmtest/<arch>/`: the `.deb`s in `debs/`, the tree in `sysroot/`.

use crate::util;
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages whose programs the guest runs. Their library dependencies are added by
/// [`closure`]. `redis-server` only holds the `redis-server -> redis-check-rdb` link;
/// the binary is in `redis-tools`.
pub const PACKAGES: [&str; 4] = ["busybox-static", "redis-tools", "redis-server", "strace"];

/// The programs, by their path in the tree (= in the guest).
pub const PROGRAMS: [&str; 4] = [
    "/usr/bin/redis-server",
    "/usr/bin/redis-cli",
    "/usr/bin/redis-benchmark",
    "/usr/bin/strace",
];

/// Where the dynamic loader looks without an `ld.so.cache` (Debian's multiarch
/// directories first), relative to the root.
fn search_dirs(multiarch: &str) -> [String; 4] {
    [
        format!("lib/{multiarch}"),
        format!("usr/lib/{multiarch}"),
        "lib".into(),
        "usr/lib".into(),
    ]
}

/// The `Depends`/`PreDepends` of `apt-cache depends` output that are shared-library
/// packages (`lib*`) of that architecture: `  Depends: libc6:arm64` gives `libc6`.
/// Virtual names (`<...>`) and the lines naming a virtual package's providers are not
/// dependencies. Programs (`adduser`, ...) are left out: the guest runs none of them.
pub fn lib_depends(out: &str, deb_arch: &str) -> Vec<String> {
    let suffix = format!(":{deb_arch}");
    out.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches('|');
            let name = l
                .strip_prefix("Depends: ")
                .or_else(|| l.strip_prefix("PreDepends: "))?
                .trim();
            let name = name.strip_suffix(&suffix).unwrap_or(name);
            (name.starts_with("lib") && !name.contains(['<', ':'])).then(|| name.to_string())
        })
        .collect()
}

/// The `NEEDED` entries of `readelf -d` output:
/// ` 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]`.
pub fn needed(readelf_d: &str) -> Vec<String> {
    readelf_d
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let (_, rest) = l.split_once('[')?;
            Some(rest.split_once(']')?.0.to_string())
        })
        .collect()
}

/// The program interpreter of `readelf -l` output:
/// `[Requesting program interpreter: /lib/ld-linux-aarch64.so.1]`; none if static.
pub fn interpreter(readelf_l: &str) -> Option<String> {
    let (_, rest) = readelf_l.split_once("program interpreter: ")?;
    Some(rest.split_once(']')?.0.trim().to_string())
}

/// A foreign user space unpacked from `.deb`s.
pub struct Userland {
    /// The unpacked tree.
    pub root: PathBuf,
    /// Debian's multiarch triplet, for the library directories (`aarch64-linux-gnu`).
    multiarch: &'static str,
}

/// The packages and the library packages they need, transitively (`apt-cache depends`
/// reads the local lists only).
fn closure(deb_arch: &str) -> Result<Vec<String>> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = PACKAGES.iter().map(|s| s.to_string()).collect();
    while let Some(p) = todo.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        let out = util::output(Command::new("apt-cache").args([
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            &format!("{p}:{deb_arch}"),
        ]))
        .with_context(|| {
            format!(
                "apt-cache depends {p}:{deb_arch}: does dpkg know {deb_arch} and has apt read \
                 its lists? (`cargo xtask setup` runs `dpkg --add-architecture {deb_arch}` and \
                 `apt-get update`)"
            )
        })?;
        todo.extend(lib_depends(&out, deb_arch));
    }
    Ok(seen.into_iter().collect())
}

/// Download (once) and unpack (once) the guest's user space for `deb_arch`.
pub fn fetch(deb_arch: &str, multiarch: &'static str, cache: &Path) -> Result<Userland> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let packages = closure(deb_arch)?;
    let root = cache.join("sysroot");
    // The tree is made from exactly these .debs: a list that changed (a new package, a
    // security update) unpacks afresh.
    let mut files = Vec::new();
    for p in &packages {
        let deb = match cached(&debs, p, deb_arch)? {
            Some(d) => d,
            None => {
                println!("[vmtest] {p}:{deb_arch}: downloading ...");
                util::run(Command::new("apt-get").current_dir(&debs).args([
                    "download",
                    "-q",
                    &format!("{p}:{deb_arch}"),
                ]))?;
                cached(&debs, p, deb_arch)?.with_context(|| {
                    format!(
                        "apt-get download {p}:{deb_arch} left no .deb in {}",
                        debs.display()
                    )
                })?
            }
        };
        files.push(deb);
    }
    let stamp = root.join(".debs");
    let want: String = files
        .iter()
        .map(|f| format!("{}\n", f.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        for f in &files {
            util::run(Command::new("dpkg-deb").arg("-x").arg(f).arg(&root))?;
        }
        std::fs::write(&stamp, &want)?;
    }
    println!(
        "[vmtest] {deb_arch} user space: {} packages in {}",
        files.len(),
        root.display()
    );
    Ok(Userland { root, multiarch })
}

/// The newest `.deb` of `package` for `deb_arch` in `dir` (`NAME_VERSION_ARCH.deb`).
fn cached(dir: &Path, package: &str, deb_arch: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&prefix)
            && (name.ends_with(&format!("_{deb_arch}.deb")) || name.ends_with("_all.deb"))
        {
            found.push(p);
        }
    }
    found.sort();
    Ok(found.pop())
}

impl Userland {
    /// `guest` (an absolute path in the tree) as a host path, its symbolic links
    /// followed inside the tree (an absolute link target is the tree's, not the host's).
    pub fn resolve(&self, guest: &str) -> Result<PathBuf> {
        let mut rel = PathBuf::from(guest.trim_start_matches('/'));
        for _ in 0..16 {
            let p = self.root.join(&rel);
            let meta = std::fs::symlink_metadata(&p)
                .with_context(|| format!("{guest}: {} does not exist", p.display()))?;
            if !meta.file_type().is_symlink() {
                return Ok(p);
            }
            let to = std::fs::read_link(&p)?;
            rel = if to.is_absolute() {
                to.strip_prefix("/")?.to_path_buf()
            } else {
                // Relative to the link's directory; `..` kept lexically inside the tree.
                let mut base = rel.parent().unwrap_or(Path::new("")).to_path_buf();
                for c in to.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            base.pop();
                        }
                        std::path::Component::Normal(n) => base.push(n),
                        _ => {}
                    }
                }
                base
            };
        }
        bail!(
            "{guest}: too many symbolic links in {}",
            self.root.display()
        )
    }

    /// The guest path of library `name`: the first search directory that has it.
    fn find_library(&self, name: &str) -> Option<String> {
        search_dirs(self.multiarch)
            .iter()
            .map(|d| format!("/{d}/{name}"))
            .find(|g| std::fs::symlink_metadata(self.root.join(&g[1..])).is_ok())
    }

    /// `program` and everything it loads: (guest path, host file) pairs, the
    /// interpreter and each library (and theirs) included. A library that is in none of
    /// the unpacked packages is an error that names it.
    pub fn with_libraries(&self, program: &str) -> Result<Vec<(PathBuf, PathBuf)>> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![program.to_string()];
        while let Some(g) = todo.pop() {
            if !seen.insert(g.clone()) {
                continue;
            }
            let host = self.resolve(&g)?;
            let d = readelf("-d", &host)?;
            let l = readelf("-l", &host)?;
            if let Some(i) = interpreter(&l) {
                todo.push(i);
            }
            for lib in needed(&d) {
                let at = self.find_library(&lib).with_context(|| {
                    format!(
                        "{program} needs {lib} ({g}), which none of the unpacked packages has \
                         ({}); add its package to vmtest's userland",
                        self.root.display()
                    )
                })?;
                todo.push(at);
            }
            out.push((PathBuf::from(&g), host));
        }
        Ok(out)
    }
}

fn readelf(flag: &str, file: &Path) -> Result<String> {
    util::output(Command::new("readelf").args(["-W", flag]).arg(file)).with_context(|| {
        format!(
            "readelf {flag} {} (binutils; `cargo xtask setup` installs build-essential)",
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_packages_from_apt_cache_depends() {
        let out = "redis-tools:arm64\n  Depends: <adduser:arm64>\n    adduser\n  Depends: libatomic1:arm64\n  Depends: libc6:arm64\n  Depends: libsystemd0:arm64\n    libelogind0:arm64\n  Breaks: redis-server:arm64\n |Depends: libgcc-s1:arm64\n  PreDepends: libzstd1:arm64\n  Depends: adduser\n";
        assert_eq!(
            lib_depends(out, "arm64"),
            [
                "libatomic1",
                "libc6",
                "libsystemd0",
                "libgcc-s1",
                "libzstd1"
            ]
        );
    }

    #[test]
    fn needed_and_interpreter_from_readelf() {
        let d = " 0x0000000000000001 (NEEDED)             Shared library: [libatomic.so.1]\n 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n 0x000000000000000c (INIT)               0x4a000\n";
        assert_eq!(needed(d), ["libatomic.so.1", "libc.so.6"]);
        assert!(needed("There is no dynamic section in this file.").is_empty());
        let l = "  INTERP         0x000238 0x0000000000000238 0x0000000000000238 0x00001b 0x00001b R   0x1\n      [Requesting program interpreter: /lib/ld-linux-aarch64.so.1]\n";
        assert_eq!(
            interpreter(l).as_deref(),
            Some("/lib/ld-linux-aarch64.so.1")
        );
        assert_eq!(interpreter("Elf file type is EXEC"), None);
    }

    #[test]
    fn links_are_followed_inside_the_tree() {
        let root = std::env::temp_dir().join(format!("vmtest-userland-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("lib/aarch64-linux-gnu")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(
            root.join("lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"),
            "x",
        )
        .unwrap();
        std::fs::write(root.join("usr/bin/redis-check-rdb"), "y").unwrap();
        let link = |to: &str, at: &str| std::os::unix::fs::symlink(to, root.join(at)).unwrap();
        link(
            "aarch64-linux-gnu/ld-linux-aarch64.so.1",
            "lib/ld-linux-aarch64.so.1",
        );
        link("redis-check-rdb", "usr/bin/redis-server");
        // Absolute: the tree's /usr/bin, not the host's.
        link("/usr/bin/redis-check-rdb", "usr/bin/abs");
        link("../../lib/ld-linux-aarch64.so.1", "usr/bin/up");
        let u = Userland {
            root: root.clone(),
            multiarch: "aarch64-linux-gnu",
        };
        let ld = root.join("lib/aarch64-linux-gnu/ld-linux-aarch64.so.1");
        let rdb = root.join("usr/bin/redis-check-rdb");
        assert_eq!(u.resolve("/lib/ld-linux-aarch64.so.1").unwrap(), ld);
        assert_eq!(u.resolve("/usr/bin/redis-server").unwrap(), rdb);
        assert_eq!(u.resolve("/usr/bin/abs").unwrap(), rdb);
        assert_eq!(u.resolve("/usr/bin/up").unwrap(), ld);
        assert!(u.resolve("/usr/bin/nothing").is_err());
        assert_eq!(
            u.find_library("ld-linux-aarch64.so.1").as_deref(),
            Some("/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1")
        );
        assert_eq!(u.find_library("libnothing.so.1"), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
