//! What differs between the guests of each architecture: the QEMU that runs them, its
//! machine, the console, Debian's name of the architecture, and where its downloads,
//! images and results are cached.
//!
//! x86-64 guests run the host's own binaries (cowtrace built for the host, the host's
//! `redis-server` and libraries). arm64 guests run cross-built static binaries (cowtrace,
//! the workloads, the root tests and the runner itself) and Debian's arm64 busybox,
//! Redis, strace and libraries, unpacked from their `.deb`s (`userland.rs`).

use crate::cross::{self, Arch};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guest {
    pub arch: Arch,
    /// Debian's name: `linux-image-...-<deb>-unsigned`, `apt-get download NAME:<deb>`.
    pub deb: &'static str,
    pub qemu: &'static str,
    /// Machine and CPU, before the common arguments.
    pub machine: &'static [&'static str],
    /// The serial console the kernel writes to.
    pub console: &'static str,
    /// Debian's multiarch directory of its libraries (`/lib/<multiarch>`).
    pub multiarch: &'static str,
    /// How much longer than on the host the tests wait for anything
    /// (`COWTRACE_TEST_TIME_SCALE`) and a root test may take: TCG runs an x86-64 guest
    /// some 10–50 times slower than the host, an arm64 one slower still (it translates
    /// another instruction set; the hand-booted arm64 tests took 20).
    pub time_scale: u32,
}

pub const X86_64: Guest = Guest {
    arch: cross::X86_64,
    deb: "amd64",
    qemu: "qemu-system-x86_64",
    machine: &[],
    console: "ttyS0",
    multiarch: "x86_64-linux-gnu",
    time_scale: 5,
};

/// `-M virt`, the generic Arm board (PL011 serial, virtio over PCIe); `-cpu max` gives
/// the newest CPU features TCG emulates, with pointer authentication's cheap
/// implementation-defined algorithm (`pauth-impdef`): the architected QARMA is
/// emulated slowly and would tax every function return in the guest.
pub const ARM64: Guest = Guest {
    arch: cross::ARM64,
    deb: "arm64",
    qemu: "qemu-system-aarch64",
    machine: &["-M", "virt", "-cpu", "max,pauth-impdef=on"],
    console: "ttyAMA0",
    multiarch: "aarch64-linux-gnu",
    time_scale: 20,
};

/// `--arch`: `x86_64` (the default) or `arm64`.
pub fn guest(name: &str) -> anyhow::Result<Guest> {
    let a = cross::arch(name)?;
    Ok(if a == cross::ARM64 { ARM64 } else { X86_64 })
}

impl Guest {
    /// The host's own architecture needs no cross build.
    pub fn is_host(&self) -> bool {
        self.arch == cross::X86_64
    }

    /// `target/vmtest` for x86-64 (as before arm64 existed), `target/vmtest/arm64`
    /// for arm64, so the two never share a cached kernel, image or results file.
    pub fn cache(&self, vmtest: &Path) -> PathBuf {
        if self.is_host() {
            vmtest.to_path_buf()
        } else {
            vmtest.join(self.arch.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_arch_has_its_qemu_console_and_cache() {
        let a = guest("arm64").unwrap();
        assert_eq!(a.qemu, "qemu-system-aarch64");
        assert_eq!(a.console, "ttyAMA0");
        assert_eq!(a.deb, "arm64");
        assert_eq!(
            a.cache(Path::new("/t/vmtest")),
            PathBuf::from("/t/vmtest/arm64")
        );
        let x = guest("x86_64").unwrap();
        assert_eq!(x, X86_64);
        assert_eq!(x.cache(Path::new("/t/vmtest")), PathBuf::from("/t/vmtest"));
        assert!(guest("riscv64").is_err());
    }
}
