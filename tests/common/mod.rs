//! Shared helpers for the signaling tests: an in-process server on 127.0.0.1:0 and a real
//! Socket.IO client (rust_socketio, EIO4) whose received events arrive on a channel, so a test
//! awaits exactly the event it expects, with a bound.
#![allow(dead_code)]

pub mod cluster;
pub mod gauges;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client as SioClient, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::{json, Value};
use sfu_lite::clock::Clock;
use sfu_lite::config::Config;
use sfu_lite::server::{start, start_with_clock, RunningServer};
use tokio::sync::{mpsc, oneshot};

pub use gauges::assert_gauges_zero;

/// Upper bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// The embedded default config on an ephemeral loopback port.
pub fn config() -> Config {
    let mut c = Config::embedded();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    // This Rust Socket.IO client does not hang up when the server disconnects it (the official
    // JS clients do), so shutdown waits out the grace period for it: keep that short.
    c.server.shutdown_grace_secs = 1;
    c
}

pub async fn server() -> RunningServer {
    server_with(|_| {}).await
}

pub async fn server_with(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let mut c = config();
    tweak(&mut c);
    start(c).await.expect("server starts")
}

/// A server whose limits read a manual clock, returned with it: the test advances time.
pub async fn server_with_clock(tweak: impl FnOnce(&mut Config)) -> (RunningServer, Clock) {
    let mut c = config();
    tweak(&mut c);
    let clock = Clock::manual();
    let server = start_with_clock(c, clock.clone())
        .await
        .expect("server starts");
    (server, clock)
}

pub fn base_url(server: &RunningServer) -> String {
    format!("http://127.0.0.1:{}/", server.local_addr.port())
}

/// Shuts the server down and checks that every gauge is back to zero.
pub async fn stop(server: RunningServer) {
    let metrics = server.metrics.clone();
    server.shutdown().await;
    assert_gauges_zero(&metrics).await;
}

/// One received event: its name and arguments.
pub type Received = (String, Vec<Value>);

pub struct Client {
    pub sio: SioClient,
    rx: mpsc::UnboundedReceiver<Received>,
}

fn payload_args(payload: Payload) -> Vec<Value> {
    match payload {
        Payload::Text(values) => values,
        #[allow(deprecated)]
        Payload::String(s) => vec![Value::String(s)],
        Payload::Binary(b) => vec![json!(b.to_vec())],
    }
}

impl Client {
    /// Connects to namespace `ns` and waits until the server has accepted it.
    pub async fn connect(server: &RunningServer, ns: &str) -> Client {
        let mut client = Self::try_connect(server, ns).await;
        let (event, payload) = client.next().await;
        assert_eq!(
            event, "connect",
            "expected connect, got {event} {payload:?}"
        );
        client
    }

    /// Connects without waiting for the namespace's answer (`connect` or `error`).
    pub async fn try_connect(server: &RunningServer, ns: &str) -> Client {
        Self::try_connect_url(base_url(server), ns).await
    }

    /// [`Client::try_connect`] by URL, for a server already handed to `shutdown`.
    pub async fn try_connect_url(url: String, ns: &str) -> Client {
        Self::try_connect_auth(url, ns, None).await
    }

    /// Connects to `/rooms` with this Socket.IO `auth` payload and waits for `connect`.
    pub async fn rooms_with_auth(server: &RunningServer, auth: Value) -> Client {
        let mut client = Self::try_connect_auth(base_url(server), "/rooms", Some(auth)).await;
        let (event, payload) = client.next().await;
        assert_eq!(
            event, "connect",
            "expected connect, got {event} {payload:?}"
        );
        client
    }

    /// [`Client::try_connect_url`] with an optional `auth` payload.
    pub async fn try_connect_auth(url: String, ns: &str, auth: Option<Value>) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut builder = ClientBuilder::new(url).namespace(ns).reconnect(false);
        if let Some(auth) = auth {
            builder = builder.auth(auth);
        }
        for (event, name) in [
            (Event::Connect, "connect"),
            (Event::Close, "close"),
            (Event::Error, "error"),
        ] {
            let tx = tx.clone();
            builder = builder.on(event, move |payload, _| {
                let _ = tx.send((name.to_string(), payload_args(payload)));
                async {}.boxed()
            });
        }
        let builder = builder.on_any(move |event, payload, _| {
            let _ = tx.send((String::from(event), payload_args(payload)));
            async {}.boxed()
        });
        let sio = tokio::time::timeout(WAIT, builder.connect())
            .await
            .expect("connect in time")
            .expect("connect");
        Client { sio, rx }
    }

    /// Connects to `/` and consumes `ready(id, persons)`; returns the id and persons.
    pub async fn tutorial(server: &RunningServer) -> (Client, String, Vec<Value>) {
        let mut c = Self::connect(server, "/").await;
        let ready = c.expect("ready").await;
        assert_eq!(ready.len(), 2, "ready has two arguments: {ready:?}");
        let id = ready[0].as_str().expect("id is a string").to_string();
        let persons = ready[1].as_array().expect("persons is an array").clone();
        (c, id, persons)
    }

    /// Connects to `/rooms`.
    pub async fn rooms(server: &RunningServer) -> Client {
        Self::connect(server, "/rooms").await
    }

    /// The next event received, whatever it is.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("an event within the wait bound")
            .expect("client channel open")
    }

    /// The next event named `event`, skipping any other; returns its arguments.
    pub async fn skip_to(&mut self, event: &str) -> Vec<Value> {
        loop {
            let (name, args) = self.next().await;
            if name == event {
                return args;
            }
        }
    }

    /// The next event, which must be `event`; returns its arguments.
    pub async fn expect(&mut self, event: &str) -> Vec<Value> {
        let (name, args) = self.next().await;
        assert_eq!(name, event, "expected {event}, got {name} {args:?}");
        args
    }

    /// The next event must be `error` with this code; returns the error object.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let args = self.expect("error").await;
        let err = args.first().cloned().unwrap_or(Value::Null);
        assert_eq!(err["code"], code, "unexpected error {err}");
        assert!(err["message"].is_string(), "error has a message: {err}");
        assert!(err["event"].is_string(), "error names the event: {err}");
        err
    }

    /// Asserts that nothing at all is pending: everything sent before `marker` on the same
    /// connection has arrived, so call after having received a marker.
    pub fn assert_nothing_pending(&mut self) {
        if let Ok(ev) = self.rx.try_recv() {
            panic!("unexpected event {ev:?}");
        }
    }

    pub async fn emit(&self, event: &str, payload: Value) {
        self.sio.emit(event, payload).await.expect("emit");
    }

    /// Emits with these exact arguments (zero, one or several).
    pub async fn emit_args(&self, event: &str, args: Vec<Value>) {
        self.sio
            .emit(event, Payload::Text(args))
            .await
            .expect("emit");
    }

    /// Emits with an acknowledgement and returns what the server acknowledged with.
    pub async fn ack(&self, event: &str, payload: Value) -> Value {
        self.ack_args(event, vec![payload]).await
    }

    pub async fn ack_args(&self, event: &str, args: Vec<Value>) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        self.sio
            .emit_with_ack(event, Payload::Text(args), WAIT, move |payload, _| {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(payload);
                }
                async {}.boxed()
            })
            .await
            .expect("emit with ack");
        let payload = tokio::time::timeout(WAIT, rx)
            .await
            .expect("ack within the wait bound")
            .expect("ack");
        // rust_socketio hands an ack's data over as the raw JSON argument array.
        match payload_args(payload).into_iter().next() {
            Some(Value::Array(args)) => args.into_iter().next().unwrap_or(Value::Null),
            Some(other) => other,
            None => Value::Null,
        }
    }

    /// `join` with an ack; panics unless it succeeded. Returns the ack.
    pub async fn join(&self, room: &str, name: &str) -> Value {
        let ack = self.ack("join", json!({"room": room, "name": name})).await;
        assert!(ack.get("error").is_none(), "join refused: {ack}");
        ack
    }

    pub async fn disconnect(self) {
        let _ = self.sio.disconnect().await;
    }
}

/// The ids in a `persons` array.
pub fn ids(persons: &[Value]) -> Vec<String> {
    persons
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}
