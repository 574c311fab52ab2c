//! A tiny HTTP `CONNECT` proxy on 127.0.0.1 that lets a private dockerd reach registries by a
//! name such as `registry.test:PORT` (RFC 2606) and so verify their TLS certificates.
//!
//! Why it exists: dockerd 20.10 treats every registry whose host resolves into 127.0.0.0/8 as
//! an insecure registry (moby `registry/config.go`: `LoadInsecureRegistries` always appends
//! `127.0.0.0/8`; `isSecureIndex` → `isCIDRMatch`): it turns certificate verification off and
//! never reads `/etc/docker/certs.d`. Tests may only reach loopback, so a registry named
//! `127.0.0.1:PORT` or `localhost:PORT` can never show that dockerd verifies a certificate. A
//! name that resolves outside 127.0.0.0/8 is secure; the test's dockerd gets its own
//! `/etc/hosts` naming `::1` for the `.test` names (`dockerd::dedicated`: `::1` is loopback,
//! but not in 127.0.0.0/8, and no DNS query leaves the machine). nginx listens on 127.0.0.1
//! only, and dockerd's registry client takes `HTTPS_PROXY` (`http.ProxyFromEnvironment`), so
//! dockerd started with `HTTPS_PROXY=http://127.0.0.1:<this proxy>` asks for
//! `CONNECT registry.test:PORT`, and this proxy connects that name to nginx. TLS stays end to
//! end between dockerd and nginx (the proxy copies bytes only), checked against certs.d.
//!
//! Only the mapped `host:port` names are served; any other target gets `403` and is recorded,
//! so nothing leaves the machine through it. Hand-written: ~100 lines of std, where a proxy
//! crate would bring a whole async stack for a test helper.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Bound on a `CONNECT` request head.
const MAX_HEAD: usize = 8 * 1024;

#[derive(Debug)]
pub struct ConnectProxy {
    pub addr: SocketAddr,
    /// Every `CONNECT` target asked for, with `true` when it was served.
    requests: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    /// Serves `name:port → loopback address` for each entry of `routes`, nothing else.
    pub fn start(routes: &[(&str, SocketAddr)]) -> Self {
        let routes: HashMap<String, SocketAddr> = routes
            .iter()
            .map(|(name, to)| {
                assert!(to.ip().is_loopback(), "the proxy only connects to loopback");
                ((*name).to_ascii_lowercase(), *to)
            })
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the CONNECT proxy");
        let addr = listener.local_addr().expect("proxy address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        let routes = Arc::new(routes);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (routes, reqs) = (Arc::clone(&routes), Arc::clone(&reqs));
                thread::spawn(move || {
                    let _ = serve(conn, &routes, &reqs);
                });
            }
        });
        Self {
            addr,
            requests,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `CONNECT` targets asked for so far, `(target, served)`.
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut client: TcpStream,
    routes: &HashMap<String, SocketAddr>,
    requests: &Mutex<Vec<(String, bool)>>,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let first = String::from_utf8_lossy(&head[..end]);
    let first = first.lines().next().unwrap_or_default().to_owned();
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let route = (method == "CONNECT")
        .then(|| routes.get(&target.to_ascii_lowercase()))
        .flatten();
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((format!("{method} {target}"), route.is_some()));
    let Some(to) = route else {
        client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    let mut upstream = TcpStream::connect(to)?;
    client.set_read_timeout(None)?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    // Bytes the client sent after the head (none from Go's client, which waits for the 200).
    upstream.write_all(&head[end..])?;
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
