//! `cargo xtask dist`: the release artifacts, in `target/dist/`:
//!
//! - `cowtrace-VERSION-x86_64-linux.tar.gz`: the static (musl) binary, with the eBPF
//!   object embedded; README, man pages, shell completions and the systemd unit;
//! - `cowtrace-VERSION-aarch64-linux.tar.gz`: the same for arm64 (cross-built static
//!   with rust-lld, `cross.rs`; its eBPF object built for arm64);
//! - `cowtrace_VERSION_amd64.deb`: the same installed under /usr (`dpkg-deb`);
//! - `cowtrace-VERSION-image.tar`: a `FROM scratch` image with only the binary
//!   (`deploy/container/Containerfile`, `podman build` then `podman save`);
//! - `SHA256SUMS` of the four.
//!
//! The build is reproducible where the tools allow it: `SOURCE_DATE_EPOCH` (the
//! commit's time unless set) dates the binary's `--version`, the man pages, and every
//! file in the archives; owners are root, modes fixed, archive members sorted.

use crate::{cross, util};
use anyhow::{Context as _, Result, bail};
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The static target: musl's C runtime linked in, so the binary needs no libc at run time.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(clap::Args)]
pub struct DistArgs {
    /// Leave out the container image (it needs podman).
    #[arg(long)]
    pub no_image: bool,
}

/// Where the artifacts go.
pub fn dist_dir() -> PathBuf {
    util::repo_root().join("target").join("dist")
}

pub fn tarball_name() -> String {
    format!("cowtrace-{VERSION}-x86_64-linux.tar.gz")
}

/// The arm64 tarball (`uname -m` names the architecture, as in the x86-64 one).
pub fn arm64_tarball_name() -> String {
    format!("cowtrace-{VERSION}-aarch64-linux.tar.gz")
}

/// ELF `e_machine` of each binary: x86-64 and AArch64.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

pub fn deb_name() -> String {
    format!("cowtrace_{VERSION}_amd64.deb")
}

pub fn image_archive_name() -> String {
    format!("cowtrace-{VERSION}-image.tar")
}

/// The local name of the image `podman build` makes.
pub fn image_tag() -> String {
    format!("localhost/cowtrace:{VERSION}")
}

/// Install paths in the .deb (and, below `PREFIX`, in the tarball's layout).
const DEB_FILES: &[(&str, &str)] = &[
    (
        "completions/cowtrace.bash",
        "usr/share/bash-completion/completions/cowtrace",
    ),
    (
        "completions/_cowtrace",
        "usr/share/zsh/vendor-completions/_cowtrace",
    ),
    (
        "completions/cowtrace.fish",
        "usr/share/fish/vendor_completions.d/cowtrace.fish",
    ),
];
const UNIT: &str = "deploy/systemd/cowtrace.service";
const CONTAINERFILE: &str = "deploy/container/Containerfile";

pub fn run(args: DistArgs) -> Result<()> {
    let t0 = Instant::now();
    let root = util::repo_root();
    preflight(args.no_image)?;
    let epoch = source_date_epoch(&root)?;
    let date = util::output(Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%F"]))?
        .trim()
        .to_string();
    let commit = util::output(
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["rev-parse", "HEAD"]),
    )
    .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string());
    println!("[dist] cowtrace {VERSION}, commit {commit}, SOURCE_DATE_EPOCH={epoch} ({date})");

    let out = dist_dir();
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    let work = out.join(".work");
    fs::create_dir_all(&work)?;

    // 1. The static binary.
    let t = Instant::now();
    util::run(
        util::cargo()
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .args([
                "build",
                "--release",
                "--target",
                TARGET,
                "-p",
                "agent",
                "--bin",
                "cowtrace",
            ]),
    )?;
    let bin = root
        .join("target")
        .join(TARGET)
        .join("release")
        .join("cowtrace");
    check_static(&bin, EM_X86_64)?;
    let version = util::output(Command::new(&bin).arg("--version").env_clear())?;
    if !version.starts_with(&format!("cowtrace {VERSION}\n")) || !version.contains("(static)") {
        bail!(
            "{} --version does not say it is static {VERSION}:\n{version}",
            bin.display()
        );
    }
    println!(
        "[dist] static binary: {} ({:.1}s)",
        size(&bin)?,
        t.elapsed().as_secs_f64()
    );

    // 2. Man pages and completions, from the clap definition (agent/examples/gendocs.rs).
    let docs = work.join("docs");
    util::run(
        util::cargo()
            .args([
                "run",
                "--quiet",
                "-p",
                "agent",
                "--example",
                "gendocs",
                "--",
            ])
            .arg(&docs)
            .args(["--date", &date]),
    )?;
    let pages = man_pages(&docs)?;

    // 3. The tarball.
    let tarball = out.join(tarball_name());
    stage_tarball(
        &root,
        &bin,
        &docs,
        &pages,
        &work.join("tar"),
        &tarball,
        epoch,
    )?;

    // 3b. The arm64 binary and its tarball. It cannot run here, so its ELF header is
    // checked instead: static, AArch64.
    let t = Instant::now();
    util::run(
        cross::cargo_for(cross::ARM64)?
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .args([
                "build",
                "--release",
                "--target",
                cross::ARM64.target,
                "-p",
                "agent",
                "--bin",
                "cowtrace",
            ]),
    )?;
    let arm_bin = cross::release_dir(cross::ARM64).join("cowtrace");
    check_static(&arm_bin, EM_AARCH64)?;
    println!(
        "[dist] static arm64 binary: {} ({:.1}s)",
        size(&arm_bin)?,
        t.elapsed().as_secs_f64()
    );
    let arm_tarball = out.join(arm64_tarball_name());
    stage_tarball(
        &root,
        &arm_bin,
        &docs,
        &pages,
        &work.join("tar-arm64"),
        &arm_tarball,
        epoch,
    )?;

    // 4. The .deb.
    let deb = out.join(deb_name());
    build_deb(&root, &bin, &docs, &pages, &work.join("deb"), &deb, epoch)?;

    // 5. The container image.
    let mut artifacts = vec![tarball, arm_tarball, deb];
    if args.no_image {
        println!("[dist] container image: left out (--no-image)");
    } else {
        let archive = out.join(image_archive_name());
        build_image(&root, &bin, &work.join("image"), &archive, epoch, &commit)?;
        artifacts.push(archive);
    }

    // 6. Checksums.
    fs::remove_dir_all(&work)?;
    let names: Vec<String> = artifacts
        .iter()
        .map(|a| a.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let sums = util::output(Command::new("sha256sum").current_dir(&out).args(&names))?;
    fs::write(out.join("SHA256SUMS"), &sums)?;

    println!("[dist] wrote {}:", out.display());
    for a in &artifacts {
        println!(
            "  {:<40} {}",
            a.file_name().unwrap().to_string_lossy(),
            size(a)?
        );
    }
    println!("  SHA256SUMS");
    println!("[dist] done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Every tool dist needs, each missing one named with the way to get it.
fn preflight(no_image: bool) -> Result<()> {
    let mut missing = Vec::new();
    let targets = util::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .unwrap_or_default();
    for t in [TARGET, cross::ARM64.target] {
        if !targets.lines().any(|l| l.trim() == t) {
            missing.push(format!("the Rust target {t} (`rustup target add {t}`)"));
        }
    }
    let mut tools = vec![
        "dpkg-deb",
        "tar",
        "gzip",
        "sha256sum",
        "md5sum",
        "date",
        "git",
    ];
    if !no_image {
        tools.push("podman");
    }
    for t in tools {
        if !util::on_path(t) {
            missing.push(format!("`{t}`"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "cargo xtask dist needs {}: run `cargo xtask setup`{}",
            missing.join(", "),
            if no_image {
                ""
            } else {
                " (or leave the image out with --no-image)"
            }
        );
    }
    Ok(())
}

/// `SOURCE_DATE_EPOCH` when set, else the time of the commit being built.
fn source_date_epoch(root: &Path) -> Result<u64> {
    if let Ok(s) = std::env::var("SOURCE_DATE_EPOCH") {
        return s
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"));
    }
    let ct =
        util::output(
            Command::new("git")
                .arg("-C")
                .arg(root)
                .args(["log", "-1", "--format=%ct"]),
        )
        .context("no SOURCE_DATE_EPOCH and no git commit to take the date from")?;
    ct.trim()
        .parse()
        .with_context(|| format!("`git log -1 --format=%ct` said {ct:?}"))
}

/// `bin` and the docs as the tarball `out` (`NAME.tar.gz`, whose one top directory is
/// NAME), staged under `stage`.
fn stage_tarball(
    root: &Path,
    bin: &Path,
    docs: &Path,
    pages: &[String],
    stage: &Path,
    out: &Path,
    epoch: u64,
) -> Result<()> {
    let file = out.file_name().unwrap_or_default().to_string_lossy();
    let name = file.strip_suffix(".tar.gz").unwrap_or(&file).to_string();
    let top = stage.join(&name);
    install(bin, &top.join("cowtrace"), 0o755)?;
    install(&root.join("README.md"), &top.join("README.md"), 0o644)?;
    for p in pages {
        install(&docs.join("man").join(p), &top.join("man").join(p), 0o644)?;
    }
    for (from, _) in DEB_FILES {
        install(&docs.join(from), &top.join(from), 0o644)?;
    }
    if root.join(UNIT).exists() {
        install(&root.join(UNIT), &top.join("cowtrace.service"), 0o644)?;
    }
    tar_gz(stage, &name, out, epoch)
}

/// Fail unless `bin` is a static executable for `machine` (ELF `e_machine`): an ELF with
/// no program interpreter (PT_INTERP), so the kernel runs it without a dynamic loader
/// or shared library.
fn check_static(bin: &Path, machine: u16) -> Result<()> {
    let bytes = fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let m = elf_machine(&bytes);
    if m != Some(machine) {
        bail!(
            "{} is built for ELF machine {m:?}, not {machine}",
            bin.display()
        );
    }
    match elf_interp(&bytes) {
        Some(false) => Ok(()),
        Some(true) => bail!(
            "{} asks for a dynamic loader (PT_INTERP): not static",
            bin.display()
        ),
        None => bail!("{} is not a 64-bit little-endian ELF file", bin.display()),
    }
}

/// The `e_machine` of a 64-bit little-endian ELF (62 x86-64, 183 AArch64); None when
/// `b` is not such a file.
pub fn elf_machine(b: &[u8]) -> Option<u16> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    Some(u16::from_le_bytes(b.get(0x12..0x14)?.try_into().ok()?))
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header; None when `b`
/// is not such a file.
pub fn elf_interp(b: &[u8]) -> Option<bool> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    const PT_INTERP: u32 = 3;
    let mut interp = false;
    for i in 0..phnum {
        interp |= u32_at(phoff.checked_add(i.checked_mul(phentsize)?)?)? == PT_INTERP;
    }
    Some(interp)
}

fn man_pages(docs: &Path) -> Result<Vec<String>> {
    let mut pages: Vec<String> = fs::read_dir(docs.join("man"))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    pages.sort();
    if !pages.iter().any(|p| p == "cowtrace.8") {
        bail!(
            "gendocs wrote no cowtrace.8 in {}",
            docs.join("man").display()
        );
    }
    Ok(pages)
}

/// Copy `from` to `to` (creating its directory) with `mode`.
fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `dir/name` as a reproducible `.tar.gz`: sorted, owned by root, dated `epoch`.
fn tar_gz(dir: &Path, name: &str, out: &Path, epoch: u64) -> Result<()> {
    let tar = out.with_extension(""); // x.tar.gz -> x.tar
    util::run(
        Command::new("tar")
            .args([
                "--sort=name",
                "--format=gnu",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
            ])
            .arg(format!("--mtime=@{epoch}"))
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg(&tar)
            .arg(name),
    )?;
    // -n: no name or time in the gzip header.
    util::run(Command::new("gzip").args(["-9", "-n", "-f"]).arg(&tar))?;
    Ok(())
}

fn gzip_to(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    let out = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(from)
        .output()
        .with_context(|| format!("gzip {}", from.display()))?;
    if !out.status.success() {
        bail!(
            "gzip {} failed: {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::write(to, out.stdout)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// The .deb: the binary in /usr/sbin, man pages in section 8, completions, the systemd
/// unit (installed, not enabled: no maintainer script runs `systemctl`), the README.
fn build_deb(
    root: &Path,
    bin: &Path,
    docs: &Path,
    pages: &[String],
    stage: &Path,
    out: &Path,
    epoch: u64,
) -> Result<()> {
    install(bin, &stage.join("usr/sbin/cowtrace"), 0o755)?;
    for p in pages {
        gzip_to(
            &docs.join("man").join(p),
            &stage.join("usr/share/man/man8").join(format!("{p}.gz")),
        )?;
    }
    for (from, to) in DEB_FILES {
        install(&docs.join(from), &stage.join(to), 0o644)?;
    }
    gzip_to(
        &root.join("README.md"),
        &stage.join("usr/share/doc/cowtrace/README.md.gz"),
    )?;
    if root.join(UNIT).exists() {
        install(
            &root.join(UNIT),
            &stage.join("usr/lib/systemd/system/cowtrace.service"),
            0o644,
        )?;
    } else {
        println!("[dist] {UNIT} does not exist: the .deb has no systemd unit");
    }

    let files = walk(stage)?;
    let installed_kib: u64 = files.iter().map(|(_, len)| len.div_ceil(1024)).sum();
    let md5 = util::output(
        Command::new("md5sum")
            .current_dir(stage)
            .args(files.iter().map(|(p, _)| p.as_str())),
    )?;
    let control = format!(
        "Package: cowtrace\n\
         Version: {VERSION}\n\
         Architecture: amd64\n\
         Maintainer: cowtrace developers\n\
         Installed-Size: {installed_kib}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: attribute Redis fork copy-on-write memory to the fork that caused it\n \
         cowtrace is an eBPF agent: every fork of a traced Redis or Valkey server\n \
         (BGSAVE, AOF rewrite) becomes a session with its exact copy-on-write page\n \
         copies, file writes, fsyncs and block I/O. watch shows them live, record\n \
         writes a JSON Lines trace, serve exports Prometheus metrics (the systemd\n \
         unit cowtrace.service runs it; it is installed disabled), report retells\n \
         a trace offline.\n \
         .\n \
         The binary is static: it needs only a Linux kernel with BTF, and root or\n \
         CAP_BPF + CAP_PERFMON.\n"
    );
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    fs::write(debian.join("control"), control)?;
    fs::write(debian.join("md5sums"), md5)?;
    for f in ["control", "md5sums"] {
        fs::set_permissions(debian.join(f), fs::Permissions::from_mode(0o644))?;
    }
    // Directories as dpkg expects them whatever the umask.
    for dir in walk_dirs(stage)? {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    }
    util::run(
        Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .args(["--root-owner-group", "--build"])
            .arg(stage)
            .arg(out),
    )?;
    Ok(())
}

/// Regular files under `dir` (relative paths, sorted) with their sizes; DEBIAN/ left out.
fn walk(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for d in walk_dirs(dir)? {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let meta = e.metadata()?;
            if meta.is_file() {
                let rel = e.path().strip_prefix(dir)?.to_string_lossy().into_owned();
                if !rel.starts_with("DEBIAN/") {
                    out.push((rel, meta.len()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `dir` and every directory below it.
fn walk_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        for e in fs::read_dir(&out[i])? {
            let e = e?;
            if e.file_type()?.is_dir() {
                out.push(e.path());
            }
        }
        i += 1;
    }
    Ok(out)
}

/// `podman build` of deploy/container/Containerfile with only the binary in its
/// context, then `podman save` (docker-archive: `podman load` and `docker load` read it).
fn build_image(
    root: &Path,
    bin: &Path,
    context: &Path,
    archive: &Path,
    epoch: u64,
    commit: &str,
) -> Result<()> {
    install(bin, &context.join("cowtrace"), 0o755)?;
    let tag = image_tag();
    // runc and cgroupfs: what podman runs with on hosts with hybrid cgroups (see
    // KERNEL-NOTES); a FROM scratch build without RUN starts no container anyway.
    // A previous build under the same tag would be left behind untagged.
    if let Err(e) = util::output(podman().args(["rmi", "--ignore", &tag])) {
        println!("[dist] warning: the previous {tag} stays (untagged): {e:#}");
    }
    util::run(
        podman()
            .arg("build")
            // No intermediate image per step: the image is all this build leaves.
            .arg("--layers=false")
            .arg(format!("--timestamp={epoch}"))
            .args(["--build-arg", &format!("VERSION={VERSION}")])
            .args(["--build-arg", &format!("COMMIT={commit}")])
            .arg("-f")
            .arg(root.join(CONTAINERFILE))
            .args(["-t", &tag])
            .arg(context),
    )?;
    util::run(
        podman()
            .args(["save", "--format", "docker-archive", "-o"])
            .arg(archive)
            .arg(&tag),
    )?;
    Ok(())
}

pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    cmd
}

fn size(p: &Path) -> Result<String> {
    let n = fs::metadata(p)?.len();
    Ok(format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(phdrs: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * phdrs.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, t) in phdrs.iter().enumerate() {
            b[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn finds_the_program_interpreter() {
        // PT_PHDR, PT_INTERP, PT_LOAD: dynamic; PT_LOAD, PT_DYNAMIC: static-pie.
        assert_eq!(elf_interp(&elf(&[6, 3, 1])), Some(true));
        assert_eq!(elf_interp(&elf(&[1, 2])), Some(false));
        assert_eq!(elf_interp(b"#!/bin/sh\n"), None);
        // Headers past the end of the file: not an answer.
        let mut cut = elf(&[1, 3]);
        cut.truncate(100);
        assert_eq!(elf_interp(&cut), None);
    }

    #[test]
    fn reads_the_machine() {
        let mut b = elf(&[1]);
        b[0x12..0x14].copy_from_slice(&EM_AARCH64.to_le_bytes());
        assert_eq!(elf_machine(&b), Some(183));
        b[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        assert_eq!(elf_machine(&b), Some(62));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn names() {
        assert_eq!(
            tarball_name(),
            format!("cowtrace-{VERSION}-x86_64-linux.tar.gz")
        );
        assert_eq!(
            arm64_tarball_name(),
            format!("cowtrace-{VERSION}-aarch64-linux.tar.gz")
        );
        assert_eq!(deb_name(), format!("cowtrace_{VERSION}_amd64.deb"));
        assert_eq!(
            image_archive_name(),
            format!("cowtrace-{VERSION}-image.tar")
        );
    }
}
