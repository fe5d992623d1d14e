//! What this binary was built from, embedded by `agent/build.rs`: shown by
//! `cowtrace --version` and written in every trace's `meta.build`.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (`git rev-parse HEAD`), or `unknown` when
/// it was built outside a git checkout.
pub const COMMIT: &str = env!("COWTRACE_GIT_COMMIT");

/// SHA-256 (hex) of the eBPF object embedded in the binary (`kernel::loader`), or
/// `unknown`.
pub const BPF_OBJECT_SHA256: &str = env!("COWTRACE_BPF_OBJECT_SHA256");

/// Build time in seconds since 1970: `SOURCE_DATE_EPOCH` when the build set it
/// (reproducible builds; `cargo xtask dist` sets it to the commit's time), else the
/// time the build script ran.
const BUILD_UNIX: &str = env!("COWTRACE_BUILD_UNIX");

/// The Rust target triple the binary was built for.
pub const TARGET: &str = env!("COWTRACE_TARGET");

/// Whether the C runtime is linked statically (the musl release: no dynamic loader,
/// no shared library needed at run time).
pub const STATIC: bool = cfg!(target_feature = "crt-static");

/// The first 12 hex digits, as git and `--version` show them.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The build date, RFC 3339 in UTC (`2025-12-03T07:18:00Z`), or `unknown`.
pub fn date() -> String {
    BUILD_UNIX
        .parse::<u64>()
        .map_or_else(|_| "unknown".to_string(), crate::text::date::rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_values_have_their_shapes() {
        let hexlen = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(hexlen(BPF_OBJECT_SHA256), "{BPF_OBJECT_SHA256}");
        // Tests run from the git checkout.
        assert!(
            COMMIT.len() == 40 && COMMIT.bytes().all(|b| b.is_ascii_hexdigit()),
            "{COMMIT}"
        );
        assert!(date().ends_with('Z') && date().len() == 20, "{}", date());
        assert_eq!(short(BPF_OBJECT_SHA256).len(), 12);
        assert_eq!(short("abc"), "abc");
        assert!(TARGET.contains("linux"), "{TARGET}");
    }

    #[test]
    fn the_hash_is_of_the_embedded_object() {
        use sha2::{Digest as _, Sha256};
        let digest = Sha256::digest(crate::kernel::loader::object());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, BPF_OBJECT_SHA256);
    }
}
