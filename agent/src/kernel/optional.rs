//! `check`'s probe of the optional attach types (fentry, kprobe, uprobe, ...) with
//! empty programs: what this kernel allows, each with the kernel's refusal in words.
use aya::{
    Btf, Ebpf,
    programs::{FEntry, KProbe, ProgramError, UProbe},
};

use crate::{kernel::links::Links, text::error::chain_of};

/// What an optional attach type does on this kernel: `ok` or the kernel's refusal.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub kind: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Try the optional attach types with empty programs; the links that attach go to
/// `links`, to be detached with the others.
pub fn probe_optional(ebpf: &mut Ebpf, btf: &Btf, links: &mut Links) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    let r = (|| -> Result<(), String> {
        let p: &mut FEntry = ebpf
            .program_mut("probe_fentry")
            .ok_or("missing")?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        p.load("do_wp_page", btf).map_err(|e| chain_of(&e))?;
        let id = p.attach().map_err(|e| chain_of(&e))?;
        links.push(p.take_link(id).map_err(|e| chain_of(&e))?);
        Ok(())
    })();
    out.push(result("fentry", r));
    let r = (|| -> Result<(), String> {
        let p: &mut KProbe = ebpf
            .program_mut("probe_kprobe")
            .ok_or("missing")?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        p.load().map_err(|e| chain_of(&e))?;
        let id = p.attach("do_wp_page", 0).map_err(|e| chain_of(&e))?;
        links.push(p.take_link(id).map_err(|e| chain_of(&e))?);
        Ok(())
    })();
    out.push(result("kprobe", r));
    let r = (|| -> Result<(), String> {
        let p: &mut UProbe = ebpf
            .program_mut("probe_uprobe")
            .ok_or("missing")?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        p.load().map_err(|e| chain_of(&e))?;
        // The static build maps no libc.so, and a FROM scratch image has no
        // /etc/ld.so.cache to find one: it probes the getpid linked into itself.
        let target = if cfg!(target_feature = "crt-static") {
            "/proc/self/exe"
        } else {
            "libc"
        };
        let id = p
            .attach(
                "getpid",
                target,
                aya::programs::uprobe::UProbeScope::CallingProcess,
            )
            .map_err(|e| chain_of(&e))?;
        links.push(p.take_link(id).map_err(|e| chain_of(&e))?);
        Ok(())
    })();
    out.push(result("uprobe", r));
    out
}

fn result(kind: &'static str, r: Result<(), String>) -> ProbeResult {
    match r {
        Ok(()) => ProbeResult {
            kind,
            ok: true,
            detail: "ok".into(),
        },
        Err(detail) => {
            // An empty verifier log adds nothing: "... (os error 1). Verifier output: "
            let detail = detail
                .trim_end()
                .trim_end_matches("Verifier output:")
                .trim_end()
                .trim_end_matches('.')
                .to_string();
            ProbeResult {
                kind,
                ok: false,
                detail,
            }
        }
    }
}
