//! A bounded HTTP/1.1 load generator for loopback benchmarks (`scrm bench http`).
//!
//! `clients` threads each hold one keep-alive connection and send GET requests back to
//! back (closed loop) until a deadline or a shared request budget; each request's latency
//! and status is kept. A blocking client costs a few microseconds of CPU per request, so
//! on a small machine nearly every core stays with the server being measured (a Python
//! client spent about a third of this machine's CPU on itself).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One load run's outcome.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Latency of every completed request, microseconds, in completion order per client.
    pub latencies_us: Vec<u64>,
    /// When each of those requests was sent, microseconds after the run's start.
    pub started_us: Vec<u64>,
    /// `(status, count)` of completed requests.
    pub statuses: Vec<(u16, u64)>,
    /// Requests that failed at the socket or HTTP level (each followed by a reconnect).
    pub errors: Vec<String>,
    pub elapsed_s: f64,
}

/// What to send: request targets (path and query) chosen round-robin from a per-client
/// offset, and extra header lines (`Name: value`).
pub struct LoadPlan<'a> {
    pub addr: SocketAddr,
    pub targets: &'a [String],
    pub headers: &'a [(String, String)],
    pub clients: usize,
    pub duration: Duration,
    pub max_requests: usize,
}

/// Runs the plan; never panics on server misbehaviour (a bad answer is an error entry).
pub fn run(plan: &LoadPlan<'_>) -> LoadResult {
    if plan.targets.is_empty() || plan.clients == 0 {
        return LoadResult::default();
    }
    let budget = AtomicUsize::new(0);
    let start = Instant::now();
    let deadline = start + plan.duration;
    let per_client: Vec<ClientLog> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..plan.clients)
            .map(|c| {
                let budget = &budget;
                s.spawn(move || client(plan, c, start, deadline, budget))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| ClientLog {
                    errors: vec!["client thread failed".into()],
                    ..Default::default()
                })
            })
            .collect()
    });
    let elapsed_s = start.elapsed().as_secs_f64();
    let mut out = LoadResult {
        elapsed_s,
        ..Default::default()
    };
    let mut counts = std::collections::BTreeMap::new();
    for log in per_client {
        out.latencies_us.extend(log.latencies_us);
        out.started_us.extend(log.started_us);
        for s in log.statuses {
            *counts.entry(s).or_insert(0u64) += 1;
        }
        out.errors.extend(log.errors);
    }
    out.statuses = counts.into_iter().collect();
    out
}

fn request_bytes(plan: &LoadPlan<'_>, target: &str) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n", plan.addr);
    for (k, v) in plan.headers {
        r.push_str(k);
        r.push_str(": ");
        r.push_str(v);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

#[derive(Default)]
struct ClientLog {
    latencies_us: Vec<u64>,
    started_us: Vec<u64>,
    statuses: Vec<u16>,
    errors: Vec<String>,
}

fn client(plan: &LoadPlan<'_>, id: usize, start: Instant, deadline: Instant, budget: &AtomicUsize) -> ClientLog {
    let mut log = ClientLog::default();
    let requests: Vec<Vec<u8>> = plan.targets.iter().map(|t| request_bytes(plan, t)).collect();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut body = Vec::new();
    let mut n = id * 7919;
    while Instant::now() < deadline && budget.fetch_add(1, Ordering::Relaxed) < plan.max_requests {
        if log.errors.len() > 100 {
            break; // a server that is down: stop hammering it
        }
        let req = &requests[n % requests.len()];
        n += 1;
        if conn.is_none() {
            match TcpStream::connect_timeout(&plan.addr, Duration::from_secs(5)) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    conn = Some(BufReader::with_capacity(64 << 10, s));
                }
                Err(e) => {
                    log.errors.push(format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let t0 = Instant::now();
        let answer = c
            .get_mut()
            .write_all(req)
            .map_err(|e| format!("send: {e}"))
            .and_then(|_| read_response(c, &mut body));
        match answer {
            Ok((status, keep_alive)) => {
                log.latencies_us.push(t0.elapsed().as_micros() as u64);
                log.started_us.push(t0.duration_since(start).as_micros() as u64);
                log.statuses.push(status);
                if !keep_alive {
                    conn = None;
                }
            }
            Err(e) => {
                log.errors.push(e);
                conn = None;
            }
        }
    }
    log
}

fn read_line(r: &mut BufReader<TcpStream>, line: &mut String) -> Result<(), String> {
    line.clear();
    match r.read_line(line) {
        Ok(0) => Err("connection closed by the server".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("receive: {e}")),
    }
}

/// Reads one response (status line, headers, a Content-Length or chunked body) into
/// `body`; returns the status and whether the connection stays open.
fn read_response(r: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> Result<(u16, bool), String> {
    let mut line = String::new();
    read_line(r, &mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", line.trim_end()))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut keep_alive = true;
    loop {
        read_line(r, &mut line)?;
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(format!("bad header line {h:?}"));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse().map_err(|_| format!("bad content-length {v:?}"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
            keep_alive = false;
        }
    }
    body.clear();
    if chunked {
        loop {
            read_line(r, &mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {:?}", line.trim_end()))?;
            if size == 0 {
                read_line(r, &mut line)?; // the empty line after the last chunk (no trailers)
                break;
            }
            let at = body.len();
            body.resize(at + size + 2, 0);
            r.read_exact(&mut body[at..]).map_err(|e| format!("receive: {e}"))?;
            body.truncate(at + size);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(body).map_err(|e| format!("receive: {e}"))?;
    } else {
        r.read_to_end(body).map_err(|e| format!("receive: {e}"))?;
        keep_alive = false;
    }
    Ok((status, keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A tiny server answering every request with `answer(n)` (n = request number).
    fn serve(answer: fn(usize) -> Vec<u8>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut n = 0;
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let mut r = BufReader::new(s);
                loop {
                    let mut head = String::new();
                    let mut ok = false;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            ok = true;
                            break;
                        }
                    }
                    if !ok {
                        break;
                    }
                    n += 1;
                    if r.get_mut().write_all(&answer(n)).is_err() {
                        break;
                    }
                }
            }
        });
        addr
    }

    fn plan(addr: SocketAddr, max: usize) -> (Vec<String>, Vec<(String, String)>, SocketAddr, usize) {
        (
            vec!["/a?q=1".into(), "/b".into()],
            vec![("Authorization".into(), "Bearer x".into())],
            addr,
            max,
        )
    }

    #[test]
    fn counts_statuses_and_bodies_of_both_framings() {
        let addr = serve(|n| {
            if n % 2 == 0 {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()
            } else {
                b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec()
            }
        });
        let (targets, headers, addr, max) = plan(addr, 40);
        let res = run(&LoadPlan {
            addr,
            targets: &targets,
            headers: &headers,
            clients: 1,
            duration: Duration::from_secs(10),
            max_requests: max,
        });
        assert_eq!(res.errors, Vec::<String>::new());
        assert_eq!(res.latencies_us.len(), 40);
        assert_eq!(res.started_us.len(), 40);
        assert!(res.started_us.iter().all(|&s| s < 10_000_000));
        assert_eq!(res.statuses, vec![(200, 20), (404, 20)]);
    }

    #[test]
    fn a_broken_answer_is_an_error_not_a_panic() {
        let addr = serve(|_| b"nonsense\r\n\r\n".to_vec());
        let (targets, headers, addr, _) = plan(addr, 3);
        let res = run(&LoadPlan {
            addr,
            targets: &targets,
            headers: &headers,
            clients: 2,
            duration: Duration::from_secs(10),
            max_requests: 3,
        });
        assert_eq!(res.latencies_us.len(), 0);
        assert_eq!(res.errors.len(), 3);
        assert!(res.errors[0].contains("bad status line"), "{:?}", res.errors);
    }
}
