//! A server's name from its listening sockets: `host:port` of its lowest listening TCP
//! port (Redis Cluster's bus port is the client port + 10000), the path of its listening
//! unix socket, or `pid N`. Read from /proc/PID/net/{tcp,tcp6,unix} (the process's own
//! network namespace) and matched to the process through the socket inodes of its fds,
//! so it holds whatever the process title says. The parsers are pure and unit-tested.
use std::{collections::HashSet, fs};

/// A listening socket of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Address as written (`127.0.0.1`, `::1`; `*` for any address) and port.
    Tcp {
        addr: String,
        port: u16,
    },
    Unix {
        path: String,
    },
}

/// The socket inodes of `pid`'s open fds (`socket:[N]` links).
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// A hex address of /proc/net/tcp{,6} in network byte order per 32-bit word, as text;
/// `*` for the any-address.
fn tcp_addr(hex: &str) -> Option<String> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    // Each word is printed in host (little-endian) order of its network bytes.
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    if bytes.iter().all(|&b| b == 0) {
        return Some("*".into());
    }
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()),
        16 => {
            let a: [u8; 16] = bytes.try_into().ok()?;
            let ip = std::net::Ipv6Addr::from(a);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => ip.to_string(),
            })
        }
        _ => None,
    }
}

/// Listening TCP sockets of /proc/net/tcp{,6} `text` whose inode is in `inodes`.
pub fn parse_tcp(text: &str, inodes: &HashSet<u64>) -> Vec<Listen> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            if *state != "0A" || !inodes.contains(&inode.parse().ok()?) {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some(Listen::Tcp {
                addr: tcp_addr(addr)?,
                port: u16::from_str_radix(port, 16).ok()?,
            })
        })
        .collect()
}

/// Listening unix sockets with a path in /proc/net/unix `text` whose inode is in
/// `inodes`.
pub fn parse_unix(text: &str, inodes: &HashSet<u64>) -> Vec<Listen> {
    const ACCEPTCON: u32 = 0x10000; // __SO_ACCEPTCON: a listening socket
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Num RefCount Protocol Flags Type St Inode Path
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let inode: u64 = f.get(6)?.parse().ok()?;
            let path = f.get(7)?;
            (flags & ACCEPTCON != 0 && inodes.contains(&inode) && path.starts_with('/')).then(
                || Listen::Unix {
                    path: path.to_string(),
                },
            )
        })
        .collect()
}

/// The name of a server listening on `listen`: the lowest TCP port first (with `host`
/// for the any-address), else the first unix socket path, else `pid N`.
pub fn name_of(listen: &[Listen], host: &str, pid: u32) -> String {
    let tcp = listen
        .iter()
        .filter_map(|l| match l {
            Listen::Tcp { addr, port } => Some((*port, addr)),
            Listen::Unix { .. } => None,
        })
        .min_by_key(|&(port, addr)| (port, addr == "*"));
    if let Some((port, addr)) = tcp {
        let addr = match addr.as_str() {
            "*" | "0.0.0.0" | "::" => host.to_string(),
            a if a.contains(':') => format!("[{a}]"),
            a => a.to_string(),
        };
        return format!("{addr}:{port}");
    }
    listen
        .iter()
        .find_map(|l| match l {
            Listen::Unix { path } => Some(path.clone()),
            Listen::Tcp { .. } => None,
        })
        .unwrap_or_else(|| format!("pid {pid}"))
}

/// The listening sockets of `pid`.
pub fn listening(pid: u32) -> Vec<Listen> {
    let inodes = socket_inodes(pid);
    if inodes.is_empty() {
        return Vec::new();
    }
    let read = |f: &str| fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
    let mut out = parse_tcp(&read("tcp"), &inodes);
    out.extend(parse_tcp(&read("tcp6"), &inodes));
    out.extend(parse_unix(&read("unix"), &inodes));
    out
}

/// The name of server `pid` (see the module's comment).
/// A server in a container is named with its container first: `redis1 /tmp/redis.sock`,
/// `docker 4f2d7c1e9a8b 0.0.0.0:6379` (its host name would be the container's).
pub fn instance_name(pid: u32) -> String {
    let name = name_of(&listening(pid), &super::hostname(), pid);
    match super::cgroup::container_of_pid(pid) {
        Some((_, container)) => format!("{container} {name}"),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:40FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
   2: 0100007F:18EB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4245 1 0000000000000000 100 0 0 10 0
";
    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 5001 /tmp/r/redis.sock
0000000000000000: 00000003 00000000 00000000 0001 03 5002 /tmp/r/redis.sock
0000000000000000: 00000002 00000000 00010000 0001 01 5003 @abstract
";

    fn inodes(v: &[u64]) -> HashSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn listening_tcp_sockets_of_the_process_only() {
        let l = parse_tcp(TCP, &inodes(&[4242, 4243, 4244]));
        assert_eq!(
            l,
            vec![
                Listen::Tcp {
                    addr: "127.0.0.1".into(),
                    port: 6379
                },
                Listen::Tcp {
                    addr: "*".into(),
                    port: 16635
                },
            ]
        );
        let l6 = parse_tcp(TCP6, &inodes(&[4245]));
        assert_eq!(
            l6,
            vec![Listen::Tcp {
                addr: "::1".into(),
                port: 6379
            }]
        );
    }

    #[test]
    fn listening_unix_sockets_with_a_path() {
        let l = parse_unix(UNIX, &inodes(&[5001, 5002, 5003]));
        assert_eq!(
            l,
            vec![Listen::Unix {
                path: "/tmp/r/redis.sock".into()
            }]
        );
    }

    #[test]
    fn names() {
        let tcp = |addr: &str, port| Listen::Tcp {
            addr: addr.into(),
            port,
        };
        let unix = Listen::Unix {
            path: "/run/redis.sock".into(),
        };
        // The lowest port (not the cluster bus port), the host for the any-address.
        assert_eq!(
            name_of(&[tcp("*", 16379), tcp("*", 6379), unix.clone()], "db1", 7),
            "db1:6379"
        );
        assert_eq!(
            name_of(&[tcp("127.0.0.1", 7000)], "db1", 7),
            "127.0.0.1:7000"
        );
        assert_eq!(name_of(&[tcp("::1", 7000)], "db1", 7), "[::1]:7000");
        assert_eq!(name_of(&[unix], "db1", 7), "/run/redis.sock");
        assert_eq!(name_of(&[], "db1", 7), "pid 7");
    }
}
