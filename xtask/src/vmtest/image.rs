//! The guest's initramfs: busybox, the binaries the guest runs (at the same absolute
//! paths as on the host, so the test binaries find `cowtrace` and `cowload` where cargo
//! built them), the shared libraries `ldd` names for each of them, the kernel's
//! modules, `/init`, and the plan for the guest runner. Written as one uncompressed
//! `newc` cpio archive (no decompression to wait for under TCG).

use crate::util;
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The guest's `/init`: mounts, modules, the disk, then the runner, then power off.
pub const INIT: &str = include_str!("init.sh");

/// The shared libraries of `ldd`'s output: every absolute path it names
/// (`libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and the loader
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`); none for a static binary.
pub fn ldd_paths(out: &str) -> Vec<PathBuf> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => l,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Files to put in an image, by their path in the guest.
#[derive(Default)]
pub struct Image {
    /// (guest path, host source) of each file, in insertion order.
    files: Vec<(PathBuf, PathBuf)>,
    /// (guest path, contents, mode) of generated files.
    generated: Vec<(PathBuf, Vec<u8>, u32)>,
    seen: BTreeSet<PathBuf>,
}

impl Image {
    /// `src` at guest path `dest`.
    pub fn file(&mut self, dest: impl Into<PathBuf>, src: impl Into<PathBuf>) {
        let dest = dest.into();
        if self.seen.insert(dest.clone()) {
            self.files.push((dest, src.into()));
        }
    }

    pub fn generated(&mut self, dest: impl Into<PathBuf>, contents: impl Into<Vec<u8>>, mode: u32) {
        let dest = dest.into();
        if self.seen.insert(dest.clone()) {
            self.generated.push((dest, contents.into(), mode));
        }
    }

    /// A dynamically linked executable at its own path, with the libraries it needs.
    pub fn executable(&mut self, path: &Path) -> Result<()> {
        self.executable_at(path, path)
    }

    /// `src` at guest path `dest`, with the libraries it needs.
    pub fn executable_at(&mut self, dest: &Path, src: &Path) -> Result<()> {
        if !src.exists() {
            bail!("{} does not exist (was it built?)", src.display());
        }
        self.file(dest, src);
        // `ldd` prints "not a dynamic executable" on stderr and exits 1 for a static one.
        let out = Command::new("ldd")
            .arg(src)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running ldd {}", src.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(l) = text.lines().find(|l| l.contains("not found")) {
            bail!(
                "{}: a library is missing on this host: {}",
                src.display(),
                l.trim()
            );
        }
        for lib in ldd_paths(&text) {
            self.file(lib.clone(), lib);
        }
        Ok(())
    }

    /// A statically linked executable (cross-built ones; busybox) at guest path `dest`.
    pub fn static_executable(&mut self, dest: &Path, src: &Path) -> Result<()> {
        if !src.is_file() {
            bail!("{} does not exist (was it built?)", src.display());
        }
        // No program interpreter: nothing else to put in the image for it.
        let bytes = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        match crate::dist::elf_interp(&bytes) {
            Some(false) => {}
            Some(true) => bail!("{} is dynamically linked, not static", src.display()),
            None => bail!("{} is not a 64-bit little-endian ELF file", src.display()),
        }
        self.file(dest, src);
        Ok(())
    }

    /// Write the archive: stage the tree under `stage` (emptied first), then
    /// `cpio -o -H newc` it to `out`.
    pub fn write(&self, stage: &Path, out: &Path) -> Result<()> {
        let _ = std::fs::remove_dir_all(stage);
        for d in [
            "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root", "etc",
        ] {
            std::fs::create_dir_all(stage.join(d))?;
        }
        let place = |dest: &Path| -> Result<PathBuf> {
            let p = stage.join(dest.strip_prefix("/").unwrap_or(dest));
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            Ok(p)
        };
        for (dest, src) in &self.files {
            let p = place(dest)?;
            // Symlinks are followed: a library symlink becomes the library itself.
            std::fs::copy(src, &p)
                .with_context(|| format!("copying {} to {}", src.display(), p.display()))?;
        }
        for (dest, contents, mode) in &self.generated {
            let p = place(dest)?;
            std::fs::write(&p, contents).with_context(|| format!("writing {}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
        }
        let list = util::output(Command::new("find").arg(".").current_dir(stage))?;
        let file =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut cpio = Command::new("cpio")
            .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
            .current_dir(stage)
            .stdin(Stdio::piped())
            .stdout(file)
            .spawn()
            .context("running cpio (apt package cpio; `cargo xtask setup` installs it)")?;
        cpio.stdin
            .take()
            .context("cpio stdin")?
            .write_all(list.as_bytes())?;
        let st = cpio.wait()?;
        if !st.success() {
            bail!("cpio failed ({st}) writing {}", out.display());
        }
        Ok(())
    }
}

/// A fresh ext4 disk image of `mib` MiB for the guest's /tmp: the tests' files and
/// Redis's RDB go through the block layer, as on a real server (the block I/O tests
/// need a real block device; tmpfs has none).
pub fn disk(path: &Path, mib: u64) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(mib << 20)?;
    drop(f);
    util::output(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "vmtest"])
            .arg(path),
    )
    .context("mkfs.ext4 (apt package e2fsprogs)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_library_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd1d5f2000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1c)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1b)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f1d)\n";
        assert_eq!(
            ldd_paths(out),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(ldd_paths("\tnot a dynamic executable\n").is_empty());
        assert!(ldd_paths("\tlibfoo.so => not found\n").is_empty());
    }
}
