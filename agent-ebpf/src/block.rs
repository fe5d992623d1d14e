//! Block I/O of the files sessions wrote, wherever it is issued from.
//!
//! Writeback is often issued by a kworker, or by the writer's own `fsync`. A request is
//! tied back to a session through the first page it carries: `rq->bio->bi_io_vec[0]
//! .bv_page`, or the head page of its folio when that page is a tail page of a large
//! folio, has `mapping->host`, the inode; and `INODE_OWNER` (filled by `write.rs`) says
//! which session last wrote that inode. Journal and metadata blocks carry no such page
//! and stay unattributed, as do direct-I/O pages (anonymous mappings).
use agent_common::{ERR_RQ_START, EV_DISK, InodeKey, NO_FD};
use aya_ebpf::{bindings::BPF_ANY, macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    maps::{INODE_OWNER, RQ_START, RqStart},
    off,
    util::{atomic_add, counted, now_ns, read_field},
    write::{emit_io, regular_inode, with_io},
};

/// Hook: `tp_btf/block_rq_issue`, `TP_PROTO(struct request *rq)`
/// (include/trace/events/block.h). One argument since 5.11: before, it was
/// `(struct request_queue *q, struct request *rq)` and argument 0 would be the queue
/// (Christoph Hellwig's "block: remove the request_queue argument to request based
/// tracepoints"; DepSurf shows the change between 5.8 and 5.11). Lowest kernel: 5.11.
#[btf_tracepoint(function = "block_rq_issue")]
pub fn block_rq_issue(ctx: BtfTracePointContext) -> i32 {
    let _ = try_issue(&ctx);
    0
}

fn try_issue(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let rq: *const u8 = ctx.arg(0);
    let bio: u64 = read_field(rq, off!(rq_bio))?;
    if bio == 0 {
        return Ok(());
    }
    let bvec: u64 = read_field(bio as *const u8, off!(bio_io_vec))?;
    let page: u64 = read_field(bvec as *const u8, off!(bvec_page))?;
    let page = folio_head(page)?;
    let mapping: u64 = read_field(page as *const u8, off!(page_mapping))?;
    // Low bit set: an anonymous or movable mapping (PAGE_MAPPING_ANON), not a file.
    if mapping == 0 || mapping & 3 != 0 {
        return Ok(());
    }
    let inode: u64 = read_field(mapping as *const u8, off!(mapping_host))?;
    let key: InodeKey = regular_inode(inode as *const u8).ok_or(0)?;
    // SAFETY: bpf_map_lookup_elem returned a live INODE_OWNER value (checked non-null);
    // the 8-byte value is copied out at once, no reference is kept.
    let owner = unsafe { *INODE_OWNER.get(&key).ok_or(0)? };
    let bytes: u32 = read_field(rq, off!(rq_data_len))?;
    let st = RqStart {
        ts_ns: now_ns(),
        owner,
        key,
        remaining: bytes as u64,
    };
    counted(
        RQ_START.insert(&(rq as u64), &st, BPF_ANY as u64),
        ERR_RQ_START,
    )?;
    Ok(())
}

/// The head page of the folio `page` belongs to. The page cache holds large folios
/// (XFS since 5.18, ext4 regular files since 6.16), and a bio_vec whose data starts
/// inside a folio names the page it starts in (`bio_add_folio()` in block/bio.c adds
/// `folio_page(folio, off / PAGE_SIZE)`): a *tail* page. Only the head page has the
/// file's `mapping`; a tail page's `mapping` slot holds poison or folio metadata, so
/// such a request was charged to no file. A tail page has bit 0 of `compound_head` set
/// and the head page's address in the other bits (`_compound_head()` in
/// include/linux/page-flags.h, since 4.4); a head or order-0 page has bit 0 clear and is
/// its own head. The offset of `compound_head` comes from BTF like every other field
/// (`maps::OFFSETS`), the poor man's CO-RE of this crate.
#[inline(always)]
fn folio_head(page: u64) -> Result<u64, i64> {
    let head: u64 = read_field(page as *const u8, off!(page_compound_head))?;
    Ok(if head & 1 != 0 { head - 1 } else { page })
}

/// Hook: `tp_btf/block_rq_complete`,
/// `TP_PROTO(struct request *rq, blk_status_t error, unsigned int nr_bytes)`
/// (include/trace/events/block.h). `error` was an `int` before 5.19 and the first
/// argument was the queue before 4.13 (DepSurf); arguments 0 and 2 are read, so the
/// lowest kernel is 5.5 (`tp_btf`), and 5.11 for the pair with `block_rq_issue`.
/// A request may complete in parts; each part is charged as it completes.
#[btf_tracepoint(function = "block_rq_complete")]
pub fn block_rq_complete(ctx: BtfTracePointContext) -> i32 {
    let _ = try_complete(&ctx);
    0
}

fn try_complete(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let rq: u64 = ctx.arg::<u64>(0);
    let st = RQ_START.get_ptr_mut(&rq).ok_or(0)?;
    // SAFETY: `st` is a non-null RQ_START value pointer from bpf_map_lookup_elem; the
    // value stays valid for this program run (map values are RCU-protected) and is copied
    // out.
    let s = unsafe { *st };
    let nr_bytes = (ctx.arg::<u64>(2) as u32) as u64;
    let bytes = if nr_bytes == 0 || nr_bytes > s.remaining {
        s.remaining
    } else {
        nr_bytes
    };
    if bytes >= s.remaining {
        let _ = RQ_START.remove(&rq);
    } else {
        // SAFETY: same live RQ_START value as above; one completion at a time updates a
        // request's entry.
        unsafe { (*st).remaining = s.remaining - bytes };
    }
    let now = now_ns();
    let lat = now.saturating_sub(s.ts_ns);
    // SAFETY: `with_io` passes only non-null IoCounters pointers into live TRACED/SESSIONS
    // values; `atomic_add` is an atomic add on those aligned u64 fields.
    with_io(s.owner.tgid, s.owner.session, |io| unsafe {
        atomic_add(&mut (*io).disk_ios, 1);
        atomic_add(&mut (*io).disk_bytes, bytes);
        atomic_add(&mut (*io).disk_ns, lat);
    });
    emit_io(
        EV_DISK,
        s.owner.tgid,
        0,
        s.owner.session,
        now,
        lat,
        bytes,
        s.key,
        NO_FD,
    );
    Ok(())
}
