//! The thin layer over the kernel: loading and attaching the BPF programs (`loader`),
//! the links that keep them attached and detach them all at once (`links`), the
//! kernel's BTF (`btf`), which hooks carry the measurements that have two paths
//! (`hooks`), how COW copies are seen on this kernel (`cow`), the programs' maps and their operations (`maps`), what the host allows
//! (`check`, and `features`, its quick version for `--version`), the privileges it
//! takes (`privileges`), and the cause probes of `--causes` (`causes`, with their
//! attaching thread `cause_attach`).
pub mod btf;
pub mod cause_attach;
pub mod causes;
pub mod check;
pub mod cow;
pub mod features;
pub mod hooks;
pub mod links;
pub mod load_error;
pub mod loader;
pub mod maps;
pub mod optional;
pub mod privileges;
