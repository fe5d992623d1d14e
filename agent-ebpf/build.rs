use which::which;

/// Building this crate for `bpfel-unknown-none` needs bpf-linker. Rebuild when it
/// changes (as aya-template does), and say clearly what to run when it is missing.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found: run `cargo xtask setup`"),
    }
}
