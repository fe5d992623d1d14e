//! `cargo xtask bench`: placeholder until the benchmark issue fills it in.

pub fn run() -> anyhow::Result<()> {
    println!("bench: not implemented yet");
    std::process::exit(1);
}
