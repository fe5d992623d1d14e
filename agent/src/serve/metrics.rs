//! The metrics `cowtrace serve` exports: their names, units, help and bounded labels
//! (`server`, `kind`, `side`, `outcome`, `map`: never a pid), registered once, and the
//! two text expositions (OpenMetrics, and Prometheus' 0.0.4 text for scrapers that do not
//! ask for OpenMetrics).
//!
//! The Redis server is the `server` label (`host:port`, a unix socket path, or `pid N`),
//! not `instance`: Prometheus sets `instance` to the scrape target (the node cowtrace runs
//! on) and would rename an exported `instance` to `exported_instance`; and two nodes'
//! `127.0.0.1:6379` servers must stay apart, which the target's `instance` does.
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use std::sync::atomic::AtomicU64;

/// A save's server and kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Save {
    pub server: String,
    pub kind: String,
}

/// Which side's writes copied the pages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SaveSide {
    pub server: String,
    pub kind: String,
    pub side: String,
}

/// How a save ended: `ok` (exit 0), `failed` (another exit code), `killed` (a signal),
/// `oom` (killed by the kernel's OOM killer).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SaveOutcome {
    pub server: String,
    pub kind: String,
    pub outcome: String,
}

/// What made the parent's copies of a save (`--causes`): a command (`SET`), a
/// background job (`expiry`), `thread NAME` or `other`. Bounded: the agent's list of
/// commands, six jobs, the server's named threads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SaveCause {
    pub server: String,
    pub kind: String,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Server {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapName {
    pub map: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Fork (the `fork()` call in the parent): 100 µs to ~3.3 s.
fn fork_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// A save's duration: 100 ms to ~27 min.
fn save_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
}

/// COW per save: 1 MiB to 64 GiB.
fn cow_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1_048_576.0, 2.0, 17))
}

/// Write and sync latency: 1 µs to ~4 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_001, 4.0, 12))
}

/// The families, each a cheap handle (the registry holds clones of the same metrics).
#[derive(Clone)]
pub struct Metrics {
    pub cow_bytes: Family<SaveSide, Counter>,
    pub cause_bytes: Family<SaveCause, Counter>,
    pub saves: Family<SaveOutcome, Counter>,
    pub written_bytes: Family<Save, Counter>,
    pub sent_bytes: Family<Save, Counter>,
    pub disk_bytes: Family<Save, Counter>,
    pub sync_calls: Family<Save, Counter>,
    pub lost_events: Counter,
    pub decode_errors: Counter,
    pub trace_dir_errors: Counter,
    pub fork_seconds: Hist<Server>,
    pub save_seconds: Hist<Save>,
    pub save_cow_bytes: Hist<Save>,
    pub write_latency: Hist<Server>,
    pub sync_latency: Hist<Server>,
    pub in_progress: Family<Save, Gauge>,
    pub current_cow_bytes: Family<Save, Gauge>,
    pub current_cow_rate: Family<Save, FloatGauge>,
    pub last_cow_bytes: Family<Save, Gauge>,
    pub projected_peak_ratio: Family<Save, FloatGauge>,
    pub projected_seconds_left: Family<Save, FloatGauge>,
    pub last_fork_seconds: Family<Server, FloatGauge>,
    pub memory_limit: Family<Server, Gauge>,
    pub memory_usage: Family<Server, Gauge>,
    pub last_peak_ratio: Family<Server, FloatGauge>,
    pub agent_cpu: Counter<f64, AtomicU64>,
    pub agent_rss: Gauge,
    pub map_entries: Family<MapName, Gauge>,
    pub kernel_errors: Family<MapName, Counter>,
    pub stalled_seconds: Family<Save, FloatGauge>,
    pub stalls: Family<Save, Counter>,
    pub slow_forks: Family<Server, Counter>,
}

impl Metrics {
    /// The families, and a registry that exposes them.
    pub fn new() -> (Self, Registry) {
        let m = Self {
            cow_bytes: Family::default(),
            cause_bytes: Family::default(),
            saves: Family::default(),
            written_bytes: Family::default(),
            sent_bytes: Family::default(),
            disk_bytes: Family::default(),
            sync_calls: Family::default(),
            lost_events: Counter::default(),
            decode_errors: Counter::default(),
            trace_dir_errors: Counter::default(),
            fork_seconds: Family::new_with_constructor(fork_buckets),
            save_seconds: Family::new_with_constructor(save_buckets),
            save_cow_bytes: Family::new_with_constructor(cow_buckets),
            write_latency: Family::new_with_constructor(latency_buckets),
            sync_latency: Family::new_with_constructor(latency_buckets),
            in_progress: Family::default(),
            current_cow_bytes: Family::default(),
            current_cow_rate: Family::default(),
            last_cow_bytes: Family::default(),
            projected_peak_ratio: Family::default(),
            projected_seconds_left: Family::default(),
            last_fork_seconds: Family::default(),
            memory_limit: Family::default(),
            memory_usage: Family::default(),
            last_peak_ratio: Family::default(),
            agent_cpu: Counter::default(),
            agent_rss: Gauge::default(),
            map_entries: Family::default(),
            kernel_errors: Family::default(),
            stalled_seconds: Family::default(),
            stalls: Family::default(),
            slow_forks: Family::default(),
        };
        let mut r = Registry::with_prefix("cowtrace");
        let b = Unit::Bytes;
        let s = Unit::Seconds;
        r.register_with_unit(
            "cow",
            "Memory copied on write during saves (4 KiB pages; a 2 MiB copy counts 512), by the side whose write copied it",
            b.clone(),
            m.cow_bytes.clone(),
        );
        r.register_with_unit(
            "save_parent_cow_by_cause",
            "The parent's copies (4 KiB each) of ended saves, by what made them: the command, the background job or thread, or other (only with --causes)",
            b.clone(),
            m.cause_bytes.clone(),
        );
        r.register(
            "saves",
            "Saves (fork children) that ended, by outcome: ok, failed, killed or oom",
            m.saves.clone(),
        );
        r.register_with_unit(
            "save_written",
            "Bytes the save children wrote to regular files",
            b.clone(),
            m.written_bytes.clone(),
        );
        r.register_with_unit(
            "save_sent",
            "Bytes the save children wrote to pipes and sockets: a diskless replica sync's RDB (counted when the save ends)",
            b.clone(),
            m.sent_bytes.clone(),
        );
        r.register_with_unit(
            "save_disk",
            "Block I/O bytes of the files the save children wrote, whoever issued it",
            b.clone(),
            m.disk_bytes.clone(),
        );
        r.register(
            "save_sync_calls",
            "fsync, fdatasync and sync_file_range calls of the save children",
            m.sync_calls.clone(),
        );
        r.register(
            "lost_events",
            "Events the kernel could not queue (ring buffer full); totals stay exact",
            m.lost_events.clone(),
        );
        r.register(
            "decode_errors",
            "Kernel events that did not decode",
            m.decode_errors.clone(),
        );
        r.register(
            "trace_dir_errors",
            "Session traces that could not be written to --trace-dir",
            m.trace_dir_errors.clone(),
        );
        r.register_with_unit(
            "fork_duration",
            "Time the server spent in fork()",
            s.clone(),
            m.fork_seconds.clone(),
        );
        r.register_with_unit(
            "save_duration",
            "How long save children ran",
            s.clone(),
            m.save_seconds.clone(),
        );
        r.register_with_unit(
            "save_cow",
            "Memory copied on write during each save",
            b.clone(),
            m.save_cow_bytes.clone(),
        );
        r.register_with_unit(
            "save_write_latency",
            "Latency of the save children's write() calls (from the detail ring; may miss events when it is full)",
            s.clone(),
            m.write_latency.clone(),
        );
        r.register_with_unit(
            "save_sync_latency",
            "Latency of the save children's fsync, fdatasync and sync_file_range calls",
            s.clone(),
            m.sync_latency.clone(),
        );
        r.register(
            "save_in_progress",
            "Saves running now",
            m.in_progress.clone(),
        );
        r.register_with_unit(
            "save_current_cow",
            "Memory copied on write so far by the saves running now",
            b.clone(),
            m.current_cow_bytes.clone(),
        );
        r.register_with_unit(
            "save_current_cow_rate",
            "Copy rate of the saves running now, in bytes per second",
            Unit::Other("bytes_per_second".into()),
            m.current_cow_rate.clone(),
        );
        r.register_with_unit(
            "last_save_cow",
            "Memory copied on write by the last save that ended (like Redis's rdb_last_cow_size)",
            b.clone(),
            m.last_cow_bytes.clone(),
        );
        r.register_with_unit(
            "save_projected_peak_memory",
            "The running save's projected peak memory as a fraction of the limit (the copies still to come at its copy rate, until the last save's output is written; the worst case without a last save)",
            Unit::Ratios,
            m.projected_peak_ratio.clone(),
        );
        r.register_with_unit(
            "save_stalled",
            "How long a running save's child has written nothing, once that reaches --stall (0 otherwise)",
            s.clone(),
            m.stalled_seconds.clone(),
        );
        r.register(
            "save_stalls",
            "Times a save's child went --stall seconds without writing anything",
            m.stalls.clone(),
        );
        r.register(
            "slow_forks",
            "Forks that blocked the server longer than --slow-fork ms per GiB of its RSS",
            m.slow_forks.clone(),
        );
        r.register_with_unit(
            "save_projected_time_left",
            "Time the running save has left, from its write progress against the last save's output (0 when unknown)",
            s.clone(),
            m.projected_seconds_left.clone(),
        );
        r.register_with_unit(
            "last_fork_duration",
            "Time the server spent in its last fork() (like Redis's latest_fork_usec)",
            s.clone(),
            m.last_fork_seconds.clone(),
        );
        r.register_with_unit(
            "memory_limit",
            "The server's memory limit: its cgroup's, else the host's memory",
            b.clone(),
            m.memory_limit.clone(),
        );
        r.register_with_unit(
            "memory_usage",
            "The server's memory usage: its cgroup's, else the host's memory in use",
            b.clone(),
            m.memory_usage.clone(),
        );
        r.register_with_unit(
            "last_save_peak_memory",
            "Peak memory usage during the last save, as a fraction of the limit",
            Unit::Ratios,
            m.last_peak_ratio.clone(),
        );
        r.register_with_unit(
            "agent_cpu",
            "CPU time cowtrace itself used (user and system)",
            s,
            m.agent_cpu.clone(),
        );
        r.register_with_unit(
            "agent_resident_memory",
            "cowtrace's own resident memory",
            b,
            m.agent_rss.clone(),
        );
        r.register(
            "map_entries",
            "Entries in cowtrace's kernel maps",
            m.map_entries.clone(),
        );
        r.register(
            "kernel_errors",
            "Failed inserts into cowtrace's kernel maps (a full map loses sessions or processes)",
            m.kernel_errors.clone(),
        );
        (m, r)
    }
}

/// The registry in the OpenMetrics text format.
pub fn openmetrics(r: &Registry) -> String {
    let mut s = String::new();
    // Encoding into a String cannot fail (our label values are strings and numbers).
    let _ = encode(&mut s, r);
    s
}

/// OpenMetrics text as Prometheus' 0.0.4 text format: no `# EOF` or `# UNIT` lines, no
/// `_created` samples, and a counter's `# HELP`/`# TYPE` named after its `_total` samples.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut counters: Vec<String> = Vec::new();
    for l in openmetrics.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for l in openmetrics.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let sample_name = l.split(['{', ' ']).next().unwrap_or("");
        if !l.starts_with('#')
            && let Some(base) = sample_name.strip_suffix("_created")
            && counters.iter().any(|c| c == base)
        {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = l.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(l));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save() -> Save {
        Save {
            server: "127.0.0.1:6379".into(),
            kind: "rdb-bgsave".into(),
        }
    }

    #[test]
    fn names_units_and_labels() {
        let (m, r) = Metrics::new();
        m.cow_bytes
            .get_or_create(&SaveSide {
                server: "127.0.0.1:6379".into(),
                kind: "rdb-bgsave".into(),
                side: "parent".into(),
            })
            .inc_by(4096);
        m.save_seconds.get_or_create(&save()).observe(1.5);
        m.current_cow_rate.get_or_create(&save()).set(1e6);
        let om = openmetrics(&r);
        for want in [
            "# TYPE cowtrace_cow_bytes counter",
            "# UNIT cowtrace_cow_bytes bytes",
            "cowtrace_cow_bytes_total{server=\"127.0.0.1:6379\",kind=\"rdb-bgsave\",side=\"parent\"} 4096",
            "cowtrace_save_duration_seconds_bucket{le=\"1.6\",server=\"127.0.0.1:6379\",kind=\"rdb-bgsave\"} 1",
            "cowtrace_save_current_cow_rate_bytes_per_second{server=\"127.0.0.1:6379\",kind=\"rdb-bgsave\"} 1000000.0",
            "# EOF",
        ] {
            assert!(om.contains(want), "missing {want:?} in\n{om}");
        }
        assert!(!om.contains("pid"), "no pid label");
    }

    #[test]
    fn prometheus_text_renames_counters_and_drops_openmetrics_lines() {
        let om = "# HELP x_bytes Copied.\n# TYPE x_bytes counter\n# UNIT x_bytes bytes\nx_bytes_total{a=\"b\"} 1\nx_bytes_created{a=\"b\"} 17.0\n# HELP g Gauge.\n# TYPE g gauge\ng 2\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP x_bytes_total Copied.\n# TYPE x_bytes_total counter\nx_bytes_total{a=\"b\"} 1\n# HELP g Gauge.\n# TYPE g gauge\ng 2\n"
        );
    }
}
