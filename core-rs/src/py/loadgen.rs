//! `http_load`: the loopback load generator of `scrm bench http` (see [`crate::loadgen`]).

use std::net::ToSocketAddrs;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::loadgen::{run, LoadPlan};

/// Sends GET `targets` (round robin) to `host:port` from `clients` keep-alive connections
/// for `seconds` or `max_requests` requests, the GIL released. Returns a dict:
/// `latencies_ms` (list), `started_ms` (when each was sent, after the start), `statuses` ({status: count}), `errors` (list of reasons),
/// `elapsed_s`.
#[pyfunction]
#[pyo3(signature = (host, port, targets, headers, clients = 50, seconds = 30.0, max_requests = 1_000_000))]
#[allow(clippy::too_many_arguments)] // keyword arguments of one Python call
fn http_load<'py>(
    py: Python<'py>,
    host: &str,
    port: u16,
    targets: Vec<String>,
    headers: Vec<(String, String)>,
    clients: usize,
    seconds: f64,
    max_requests: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| PyValueError::new_err(format!("{host}:{port}: {e}")))?
        .next()
        .ok_or_else(|| PyValueError::new_err(format!("{host}:{port}: no address")))?;
    if !(seconds.is_finite() && seconds > 0.0) || clients == 0 || clients > 10_000 {
        return Err(PyValueError::new_err("seconds must be > 0 and clients 1..=10000"));
    }
    if targets
        .iter()
        .any(|t| !t.starts_with('/') || t.contains(['\r', '\n', ' ']))
    {
        return Err(PyValueError::new_err(
            "targets must be URL paths (with an encoded query)",
        ));
    }
    let res = py.detach(|| {
        run(&LoadPlan {
            addr,
            targets: &targets,
            headers: &headers,
            clients,
            duration: Duration::from_secs_f64(seconds),
            max_requests,
        })
    });
    let out = PyDict::new(py);
    let lat: Vec<f64> = res.latencies_us.iter().map(|&u| u as f64 / 1000.0).collect();
    out.set_item("latencies_ms", lat)?;
    let started: Vec<f64> = res.started_us.iter().map(|&u| u as f64 / 1000.0).collect();
    out.set_item("started_ms", started)?;
    let st = PyDict::new(py);
    for (s, n) in res.statuses {
        st.set_item(s, n)?;
    }
    out.set_item("statuses", st)?;
    out.set_item("errors", res.errors)?;
    out.set_item("elapsed_s", res.elapsed_s)?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(http_load, m)?)
}
