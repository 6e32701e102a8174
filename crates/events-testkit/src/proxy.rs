//! An in-process TCP proxy between a client and a server on loopback, for network faults
//! that no signal to the server can make: cut every connection (and refuse new ones) for a
//! while, or stall them (hold every byte, both ways, connections left open) for a while.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use events_testkit::{NatsServer, TcpProxy};
//! # async fn example() {
//! let nats = NatsServer::start().await;
//! let proxy = TcpProxy::start(nats.port()).await;
//! let client = async_nats::connect(proxy.url()).await.unwrap();
//! proxy.cut_for(Duration::from_secs(5)); // the client sees its connection drop
//! proxy.stall_for(Duration::from_secs(3)); // later: bytes held, nothing dropped
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until, timeout};

/// How long the proxy waits to connect to the server for a new client connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read at once per direction.
const BUFFER: usize = 64 * 1024;

/// Shared between the handle and the tasks.
#[derive(Debug)]
struct Control {
    /// Refuse (close at once) new connections until then.
    refuse_until: Mutex<Option<Instant>>,
    /// Hold every byte until then.
    stall_until: Mutex<Option<Instant>>,
    /// Bumped by every cut: connection tasks watching it end their connection.
    cuts: watch::Sender<u64>,
    /// Connections accepted and forwarded so far.
    accepted: Mutex<u64>,
    /// Bytes read from clients so far (forwarded, held, or lost in a cut).
    from_clients: Mutex<u64>,
}

impl Control {
    fn until(slot: &Mutex<Option<Instant>>) -> Option<Instant> {
        let at = *slot.lock().unwrap_or_else(|e| e.into_inner());
        at.filter(|at| *at > Instant::now())
    }

    fn set(slot: &Mutex<Option<Instant>>, d: Duration) {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + d);
    }
}

/// A TCP proxy on a free loopback port that forwards to `127.0.0.1:<upstream port>`, with
/// faults on demand. Dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    control: Arc<Control>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy to the server on `127.0.0.1:upstream_port`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn start(upstream_port: u16) -> TcpProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("proxy: bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy: local address: {e}"));
        let control = Arc::new(Control {
            refuse_until: Mutex::new(None),
            stall_until: Mutex::new(None),
            cuts: watch::channel(0).0,
            accepted: Mutex::new(0),
            from_clients: Mutex::new(0),
        });
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
        let task = tokio::spawn(accept_loop(listener, upstream, control.clone()));
        TcpProxy {
            addr,
            control,
            task,
        }
    }

    /// The URL clients connect to, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every open connection now and refuses new ones (accepted, then closed at
    /// once, before the server's `INFO`) for `d`. Returns at once.
    pub fn cut_for(&self, d: Duration) {
        Control::set(&self.control.refuse_until, d);
        self.control.cuts.send_modify(|n| *n += 1);
    }

    /// Holds every byte in both directions for `d`; connections stay open and what was
    /// held is forwarded, in order, afterwards. Returns at once.
    pub fn stall_for(&self, d: Duration) {
        Control::set(&self.control.stall_until, d);
    }

    /// Ends a cut or a stall now.
    pub fn heal(&self) {
        *self
            .control
            .refuse_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        *self
            .control
            .stall_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Bytes read from clients so far: forwarded, held by a stall, or lost in a cut. A test
    /// waits on it to know that what a client sent has left the client.
    pub fn bytes_from_clients(&self) -> u64 {
        *self
            .control
            .from_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Client connections forwarded to the server so far (refused ones not counted).
    pub fn connections(&self) -> u64 {
        *self
            .control
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, control: Arc<Control>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if Control::until(&control.refuse_until).is_some() {
                    drop(client); // refused: closed before the server says anything
                    continue;
                }
                connections.spawn(forward(client, upstream, control.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One client connection: pump both ways until either side closes or a cut comes.
async fn forward(client: TcpStream, upstream: SocketAddr, control: Arc<Control>) {
    let mut cuts = control.cuts.subscribe();
    cuts.mark_unchanged();
    let Ok(Ok(server)) = timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    else {
        return; // the server is down: the client sees its connection closed
    };
    *control.accepted.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, &control, true) => {}
        _ = pump(server_read, client_write, &control, false) => {}
        _ = cuts.changed() => {}
    }
    // Returning drops all four halves: both sockets close.
}

/// Copies `from` to `to`, holding each chunk while a stall lasts.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, control: &Control, client: bool) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if client {
            *control
                .from_clients
                .lock()
                .unwrap_or_else(|e| e.into_inner()) += n as u64;
        }
        while let Some(until) = Control::until(&control.stall_until) {
            sleep_until(until).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
