//! The attached programs' links, detached all at once.
//!
//! Detaching a tracepoint waits for RCU grace periods (`perf_trace_event_unreg` calls
//! `tracepoint_synchronize_unregister`, kernel/trace/trace_event_perf.c): about 60 ms
//! each here, so closing cowtrace's 35 links one after the other took 2 s. Waits that
//! overlap share their grace periods, so each link is closed on a thread of its own.
//! Every way out joins those threads: no probe outlives the agent's run.
use std::thread::JoinHandle;

/// Owned links (aya's `*Link` types): each detaches its program when dropped.
#[derive(Default)]
pub struct Links(Vec<Box<dyn Send>>);

impl Links {
    pub fn push<L: Send + 'static>(&mut self, link: L) {
        self.0.push(Box::new(link));
    }

    /// Take over every link of `other`.
    pub fn absorb(&mut self, mut other: Links) {
        self.0.append(&mut other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Start detaching every link; the work goes on while the caller does something
    /// else (the summary, the rest of `check`) and ends when the result is joined or
    /// dropped.
    pub fn detach_in_background(mut self) -> Detaching {
        let links = std::mem::take(&mut self.0);
        Detaching(Some(std::thread::spawn(move || detach_all(links))))
    }
}

impl Drop for Links {
    /// Detach every link now (in parallel); returns when all are detached.
    fn drop(&mut self) {
        detach_all(std::mem::take(&mut self.0));
    }
}

/// Links being detached; `wait` (or drop) returns once all of them are.
#[must_use = "dropping it waits for the detach; keep it to overlap other work"]
pub struct Detaching(Option<JoinHandle<()>>);

impl Detaching {
    pub fn wait(mut self) {
        self.join();
    }

    /// Whether every link is detached (then dropping it does not wait).
    pub fn is_finished(&self) -> bool {
        self.0.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn join(&mut self) {
        if let Some(h) = self.0.take()
            && h.join().is_err()
        {
            log::warn!("a thread detaching probes panicked");
        }
    }
}

impl Drop for Detaching {
    fn drop(&mut self) {
        self.join();
    }
}

/// Drop each link on a thread of its own and wait for all of them. A link whose
/// thread cannot be started is dropped by the failed spawn, there and then.
fn detach_all(links: Vec<Box<dyn Send>>) {
    if links.is_empty() {
        return;
    }
    let t0 = std::time::Instant::now();
    let n = links.len();
    std::thread::scope(|s| {
        for link in links {
            let spawned = std::thread::Builder::new()
                .name("cowtrace-detach".into())
                .spawn_scoped(s, move || drop(link));
            if let Err(e) = spawned {
                log::debug!("detaching on this thread: {e}");
            }
        }
    });
    log::debug!("detached {n} links in {} ms", t0.elapsed().as_millis());
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::{Duration, Instant},
    };

    use super::*;

    /// A link stand-in whose detach takes `ms` and is counted.
    struct Slow(Arc<AtomicUsize>, u64);

    impl Drop for Slow {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(self.1));
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_link_is_detached_in_parallel_before_drop_returns() {
        let done = Arc::new(AtomicUsize::new(0));
        let mut links = Links::default();
        for _ in 0..20 {
            links.push(Slow(done.clone(), 100));
        }
        assert_eq!(links.len(), 20);
        let t0 = Instant::now();
        drop(links);
        assert_eq!(done.load(Ordering::SeqCst), 20);
        // One after the other would take 2 s.
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn background_detach_is_done_once_joined_or_dropped() {
        let done = Arc::new(AtomicUsize::new(0));
        let mut links = Links::default();
        for _ in 0..3 {
            links.push(Slow(done.clone(), 50));
        }
        links.detach_in_background().wait();
        assert_eq!(done.load(Ordering::SeqCst), 3);
        let mut links = Links::default();
        links.push(Slow(done.clone(), 50));
        let d = links.detach_in_background();
        drop(d);
        assert_eq!(done.load(Ordering::SeqCst), 4);
    }
}
