//! cowtrace kernel programs.
//!
//! One module per hook family. Every program filters first on the traced tgids (the
//! `TRACED` map), then measures, then emits. Totals live in maps updated with atomic
//! adds, so a full ring buffer blurs a timeline but never a total.
#![no_std]
#![no_main]
// `atomic_xadd`: this crate is built with nightly (it needs -Z build-std anyway).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod attrib;
mod block;
mod fault;
mod fork;
mod maps;
mod probe;
mod syscall;
mod trampoline;
mod util;
mod wp_fault;
mod write;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// SAFETY: the kernel reads the program licence from the `license` section; no other
// item is placed there or named LICENSE.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
