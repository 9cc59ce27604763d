//! Access control on `/rooms` with the real server and a real Socket.IO client: every role
//! against every action, every token defect, password guessing, moderation, the admin API and
//! a SIGHUP reload of the real binary.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use common::{server_with, server_with_clock, stop, Client, WAIT};
use serde_json::{json, Value};
use sfu_lite::access::token::KeyConfig;
use sfu_lite::access::{password, Claims, Keys, Role, RoomPolicy};
use sfu_lite::config::{Config, Secret};
use sfu_lite::server::RunningServer;

const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

fn keys_config() -> BTreeMap<String, KeyConfig> {
    let mut keys = BTreeMap::new();
    keys.insert("main".to_string(), KeyConfig::hs256(SECRET));
    keys
}

fn with_keys(c: &mut Config) {
    c.auth.keys = keys_config();
}

fn mint(claims: &Claims) -> String {
    Keys::from_config(&keys_config(), 0)
        .unwrap()
        .mint(None, claims)
        .unwrap()
}

fn token(room: &str, name: &str, role: Role) -> String {
    mint(&Claims::new(room, Some(name.into()), role, 600))
}

/// Everything the server logs in this test binary, to check that no secret ever appears.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("sfu_lite=debug")
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The outcome of an acknowledged event: "ok", or the refusal's code (whose `error` event is
/// consumed too).
async fn outcome(c: &mut Client, event: &str, payload: Value) -> String {
    let ack = c.ack(event, payload).await;
    match ack.get("error") {
        None => "ok".into(),
        Some(err) => {
            let code = err["code"].as_str().unwrap().to_string();
            let echoed = c.skip_to("error").await;
            assert_eq!(echoed[0]["code"], code.as_str());
            code
        }
    }
}

async fn join_code(c: &mut Client, payload: Value) -> String {
    outcome(c, "join", payload).await
}

fn offer(source: &str) -> Value {
    json!({"sdp": "v=0 not really", "tracks": [{"mid": "0", "source": source}]})
}

#[tokio::test]
async fn every_role_against_every_action() {
    let server = server_with(with_keys).await;
    // (action, payload builder, expected for viewer, participant, presenter, moderator).
    // "bad_sdp" means the access check let the offer through to the SFU.
    type Payload = fn(&str) -> (&'static str, Value);
    let table: Vec<(&str, Payload, [&str; 4])> = vec![
        ("chat", |_| ("message", json!({"content": "hi"})), ["ok"; 4]),
        (
            "publish camera",
            |_| ("publish_offer", offer("camera")),
            ["publish_denied", "bad_sdp", "bad_sdp", "bad_sdp"],
        ),
        (
            "publish microphone",
            |_| ("publish_offer", offer("microphone")),
            ["publish_denied", "bad_sdp", "bad_sdp", "bad_sdp"],
        ),
        (
            "publish screen",
            |_| ("publish_offer", offer("screen")),
            ["publish_denied", "publish_denied", "bad_sdp", "bad_sdp"],
        ),
        (
            "mute another",
            |other| {
                (
                    "moderate",
                    json!({"action": "mute", "id": other, "source": "microphone"}),
                )
            },
            ["not_moderator", "not_moderator", "not_moderator", "ok"],
        ),
        (
            "lift that mute",
            |other| {
                (
                    "moderate",
                    json!({"action": "unmute", "id": other, "source": "microphone"}),
                )
            },
            ["not_moderator", "not_moderator", "not_moderator", "ok"],
        ),
        (
            "promote another",
            |other| {
                (
                    "moderate",
                    json!({"action": "set_role", "id": other, "role": "moderator"}),
                )
            },
            ["not_moderator", "not_moderator", "not_moderator", "ok"],
        ),
        (
            "lock",
            |_| ("moderate", json!({"action": "lock"})),
            ["not_moderator", "not_moderator", "not_moderator", "ok"],
        ),
        (
            "unlock",
            |_| ("moderate", json!({"action": "unlock"})),
            ["not_moderator", "not_moderator", "not_moderator", "ok"],
        ),
        (
            "remove an unknown member",
            |_| ("moderate", json!({"action": "remove", "id": "nobody"})),
            [
                "not_moderator",
                "not_moderator",
                "not_moderator",
                "unknown_participant",
            ],
        ),
        (
            "end the meeting",
            |_| ("moderate", json!({"action": "end"})),
            ["not_moderator", "not_moderator", "not_moderator", "ok"],
        ),
    ];
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let room = format!("table-{}", role.as_str());
        let other = Client::rooms(&server).await;
        let other_ack = other
            .ack("join", json!({"room": room, "name": "Other", "token": token(&room, "Other", Role::Moderator)}))
            .await;
        let other_id = other_ack["id"].as_str().unwrap().to_string();
        let mut actor = Client::rooms(&server).await;
        let ack = actor
            .ack(
                "join",
                json!({"room": room, "name": "x", "token": token(&room, "Actor", role)}),
            )
            .await;
        assert_eq!(ack["role"], role.as_str(), "{ack}");
        assert_eq!(ack["name"], "Actor", "the token fixes the name: {ack}");
        let own_id = ack["id"].as_str().unwrap().to_string();
        for (action, payload, expected) in &table {
            let (event, body) = payload(&other_id);
            let got = outcome(&mut actor, event, body).await;
            assert_eq!(got, expected[i], "{} doing {action}", role.as_str());
        }
        // A role escalation: promoting oneself is a moderator action like any other.
        if role != Role::Moderator {
            let me = json!({"action": "set_role", "id": own_id, "role": "moderator"});
            assert_eq!(outcome(&mut actor, "moderate", me).await, "not_moderator");
        }
        actor.disconnect().await;
        other.disconnect().await;
    }
    stop(server).await;
}

#[tokio::test]
async fn a_join_cannot_claim_a_role() {
    let server = server_with(with_keys).await;
    let mut c = Client::rooms(&server).await;
    let code = join_code(
        &mut c,
        json!({"room": "r", "name": "M", "role": "moderator"}),
    )
    .await;
    assert_eq!(code, "bad_request");
    stop(server).await;
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn every_token_defect_has_its_code_changes_nothing_and_logs_no_secret() {
    let logs = captured_logs();
    let server = server_with(|c| {
        with_keys(c);
        c.rooms.insert(
            "vip".into(),
            RoomPolicy {
                access: sfu_lite::access::policy::Entry::Invite,
                ..Default::default()
            },
        );
    })
    .await;
    let now = jsonwebtoken::get_current_timestamp();
    let good = token("vip", "Ada", Role::Moderator);
    let body = good.split('.').nth(1).unwrap().to_string();
    let mut forged = good.clone();
    forged.pop();
    forged.push(if good.ends_with('A') { 'B' } else { 'A' });
    let other_key = {
        let mut k = keys_config();
        k.get_mut("main").unwrap().secret = Secret("another-secret-0123456789-abcdefghijk".into());
        Keys::from_config(&k, 0)
            .unwrap()
            .mint(
                None,
                &Claims::new("vip", Some("Ada".into()), Role::Moderator, 600),
            )
            .unwrap()
    };
    let expired = mint(&Claims {
        exp: now - 600,
        ..Claims::new("vip", Some("Ada".into()), Role::Moderator, 600)
    });
    let early = mint(&Claims {
        nbf: Some(now + 600),
        ..Claims::new("vip", Some("Ada".into()), Role::Moderator, 600)
    });
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "token_required"),
        ("garbage", Some("not.a.jwt".into()), "token_malformed"),
        (
            "alg none",
            Some(format!("{}.{body}.", b64(r#"{"alg":"none","typ":"JWT"}"#))),
            "token_algorithm",
        ),
        (
            "wrong algorithm for the key",
            Some(format!(
                "{}.{body}.AAAA",
                b64(r#"{"alg":"HS512","kid":"main"}"#)
            )),
            "token_algorithm",
        ),
        (
            "unknown key",
            Some(format!(
                "{}.{body}.AAAA",
                b64(r#"{"alg":"HS256","kid":"old"}"#)
            )),
            "token_unknown_key",
        ),
        ("forged signature", Some(forged), "token_signature"),
        (
            "signed with another secret",
            Some(other_key),
            "token_signature",
        ),
        ("expired", Some(expired), "token_expired"),
        ("not yet valid", Some(early), "token_not_yet_valid"),
        (
            "for another room",
            Some(token("other", "Ada", Role::Moderator)),
            "token_wrong_room",
        ),
        (
            "oversized",
            Some(format!("{good}{}", "A".repeat(5000))),
            "token_too_large",
        ),
    ];
    let mut secrets = vec![SECRET.to_string()];
    for (what, tok, code) in cases {
        let mut c = Client::rooms(&server).await;
        let mut payload = json!({"room": "vip", "name": "Ada"});
        if let Some(t) = &tok {
            payload["token"] = json!(t);
            secrets.push(t.clone());
        }
        assert_eq!(join_code(&mut c, payload).await, code, "{what}");
        assert_eq!(
            server.metrics.participants.load(Ordering::Relaxed),
            0,
            "{what}: nobody joined"
        );
        assert_eq!(
            server.metrics.rooms.load(Ordering::Relaxed),
            0,
            "{what}: no room made"
        );
        c.disconnect().await;
    }
    // The good one, through the Socket.IO auth payload, still opens the room.
    let c = Client::rooms_with_auth(&server, json!({"token": good})).await;
    let ack = c.join("vip", "ignored").await;
    assert_eq!(ack["role"], "moderator");
    secrets.push(good);
    stop(server).await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(
        logs.contains("join refused"),
        "the refusals were logged at all"
    );
    for s in secrets {
        // A token's signature part is what makes it a secret.
        let sig = s.rsplit('.').next().unwrap_or(&s);
        if sig.len() >= 8 {
            assert!(!logs.contains(sig), "a token or secret appears in the logs");
        }
    }
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited_per_address() {
    let hash = password::hash("sesame").unwrap();
    let (server, clock) = server_with_clock(|c| {
        c.auth.password_failures_per_address = 3;
        c.rooms.insert(
            "locked-box".into(),
            RoomPolicy {
                password: hash.clone(),
                ..Default::default()
            },
        );
    })
    .await;
    let mut c = Client::rooms(&server).await;
    let join = |pw: Option<&str>| {
        let mut p = json!({"room": "locked-box", "name": "Guess"});
        if let Some(pw) = pw {
            p["password"] = json!(pw);
        }
        p
    };
    assert_eq!(join_code(&mut c, join(None)).await, "password_required");
    for _ in 0..3 {
        assert_eq!(
            join_code(&mut c, join(Some("guess"))).await,
            "password_wrong"
        );
    }
    // Over the limit, even the right password is not checked.
    assert_eq!(
        join_code(&mut c, join(Some("sesame"))).await,
        "password_rate_limited"
    );
    assert_eq!(server.metrics.participants.load(Ordering::Relaxed), 0);
    clock.advance(password::WINDOW);
    assert_eq!(join_code(&mut c, join(Some("sesame"))).await, "ok");
    c.disconnect().await;
    stop(server).await;
}

#[tokio::test]
async fn a_removed_and_banned_member_is_told_why_and_cannot_return() {
    let server = server_with(with_keys).await;
    let m = Client::rooms(&server).await;
    m.ack(
        "join",
        json!({"room": "r", "name": "M", "token": token("r", "Mod", Role::Moderator)}),
    )
    .await;
    let mut p = Client::rooms(&server).await;
    let pid = p
        .ack(
            "join",
            json!({"room": "r", "name": "P", "token": token("r", "Pat", Role::Participant)}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mute = json!({"action": "mute", "id": pid, "source": "microphone"});
    assert_eq!(m.ack("moderate", mute).await, json!({}));
    let told = p.skip_to("moderated").await;
    assert_eq!(told[0]["action"], "mute");
    assert_eq!(told[0]["id"], pid.as_str());
    assert_eq!(told[0]["source"], "microphone");
    // A participant may lift its own mute where the room allows it (the default).
    let unmute = json!({"action": "unmute", "id": pid, "source": "microphone"});
    assert_eq!(outcome(&mut p, "moderate", unmute).await, "ok");
    assert_eq!(p.skip_to("moderated").await[0]["action"], "unmute");

    let remove = json!({"action": "remove", "id": pid, "ban": true});
    assert_eq!(m.ack("moderate", remove).await, json!({}));
    let told = p.skip_to("moderated").await;
    assert_eq!(told[0]["action"], "remove");
    p.expect_error("removed").await;
    // The banned identity, with a fresh token, is refused.
    let again = json!({"room": "r", "name": "P", "token": token("r", "Pat", Role::Participant)});
    assert_eq!(join_code(&mut p, again).await, "banned");
    p.disconnect().await;
    m.disconnect().await;
    stop(server).await;
}

#[tokio::test]
async fn a_locked_room_admits_moderators_only() {
    let server = server_with(with_keys).await;
    let m = Client::rooms(&server).await;
    m.ack(
        "join",
        json!({"room": "r", "name": "M", "token": token("r", "Mod", Role::Moderator)}),
    )
    .await;
    assert_eq!(
        m.ack("moderate", json!({"action": "lock"})).await,
        json!({})
    );
    let mut guest = Client::rooms(&server).await;
    assert_eq!(
        join_code(&mut guest, json!({"room": "r", "name": "G"})).await,
        "room_locked"
    );
    let m2 = Client::rooms(&server).await;
    let ack = m2
        .ack(
            "join",
            json!({"room": "r", "name": "M2", "token": token("r", "Mod2", Role::Moderator)}),
        )
        .await;
    assert_eq!(ack["policy"]["locked"], true, "{ack}");
    for c in [m, guest, m2] {
        c.disconnect().await;
    }
    stop(server).await;
}

async fn http(server: &RunningServer, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}{path}", server.local_addr.port());
    let client = reqwest::Client::new();
    let mut req = match method {
        "GET" => client.get(url),
        "DELETE" => client.delete(url),
        _ => client
            .post(url)
            .header("content-type", "application/json")
            .body(json!({"room": "api-room", "name": "Minted", "role": "viewer"}).to_string()),
    };
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let res = tokio::time::timeout(WAIT, req.send())
        .await
        .unwrap()
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn admin_api_is_off_without_a_key() {
    let server = server_with(with_keys).await;
    assert_eq!(http(&server, "GET", "/api/v1/rooms", None).await.0, 404);
    assert_eq!(http(&server, "GET", "/api/v1/rooms", Some("")).await.0, 404);
    stop(server).await;
}

#[tokio::test]
async fn admin_api_lists_mints_removes_and_ends_with_its_key_only() {
    const KEY: &str = "admin-key-for-tests";
    let server = server_with(|c| {
        with_keys(c);
        c.auth.admin_key = Secret(KEY.into());
    })
    .await;
    assert_eq!(http(&server, "GET", "/api/v1/rooms", None).await.0, 401);
    assert_eq!(
        http(&server, "GET", "/api/v1/rooms", Some("wrong")).await.0,
        401
    );
    assert_eq!(
        http(
            &server,
            "POST",
            "/api/v1/tokens",
            Some("admin-key-for-test")
        )
        .await
        .0,
        401
    );

    let (status, minted) = http(&server, "POST", "/api/v1/tokens", Some(KEY)).await;
    assert_eq!(status, 200, "{minted}");
    let mut a = Client::rooms(&server).await;
    let ack = a
        .ack(
            "join",
            json!({"room": "api-room", "name": "x", "token": minted["token"]}),
        )
        .await;
    assert_eq!(ack["role"], "viewer", "{ack}");
    let id = ack["id"].as_str().unwrap().to_string();

    let (status, list) = http(&server, "GET", "/api/v1/rooms", Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(list["rooms"][0]["name"], "api-room", "{list}");
    assert_eq!(list["rooms"][0]["members"][0]["id"], id.as_str());
    assert_eq!(list["rooms"][0]["members"][0]["role"], "viewer");
    assert_eq!(list["rooms"][0]["members"][0]["name"], "Minted");

    let path = format!("/api/v1/rooms/api-room/participants/{id}");
    assert_eq!(http(&server, "DELETE", &path, None).await.0, 401);
    assert_eq!(
        http(
            &server,
            "DELETE",
            "/api/v1/rooms/api-room/participants/nobody",
            Some(KEY)
        )
        .await
        .0,
        404
    );
    assert_eq!(http(&server, "DELETE", &path, Some(KEY)).await.0, 204);
    assert_eq!(a.skip_to("moderated").await[0]["by"], "");
    a.expect_error("removed").await;

    let b = Client::rooms(&server).await;
    b.join("api-room-2", "B").await;
    let mut b = b;
    assert_eq!(
        http(&server, "DELETE", "/api/v1/rooms/api-room-2", Some(KEY))
            .await
            .0,
        204
    );
    assert_eq!(b.skip_to("moderated").await[0]["action"], "end");
    b.expect_error("room_ended").await;
    assert_eq!(
        http(&server, "DELETE", "/api/v1/rooms/api-room-2", Some(KEY))
            .await
            .0,
        404
    );
    a.disconnect().await;
    b.disconnect().await;
    stop(server).await;
}

/// Reads lines from `reader` until one contains `needle`, within the wait bound.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test]
async fn sighup_reloads_room_policies_without_dropping_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sfu.toml");
    let write = |access: &str| {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 1\n[rooms.\"hall\"]\naccess = \"{access}\"\n"
        );
        std::fs::write(&path, text).unwrap();
    };
    write("open");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sfu-lite"))
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let line = wait_for_line(&stdout, "listening on");
    let url = line
        .rsplit(' ')
        .next()
        .unwrap()
        .replace("localhost", "127.0.0.1");

    let mut a = Client::try_connect_auth(url.clone(), "/rooms", None).await;
    a.expect("connect").await;
    assert_eq!(
        join_code(&mut a, json!({"room": "hall", "name": "A"})).await,
        "ok"
    );

    write("invite");
    // SAFETY: kill only sends a signal to the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    wait_for_line(&stderr, "access rules reloaded");

    let mut b = Client::try_connect_auth(url, "/rooms", None).await;
    b.expect("connect").await;
    assert_eq!(
        join_code(&mut b, json!({"room": "hall", "name": "B"})).await,
        "token_required"
    );
    // A is still in the room and served.
    assert_eq!(
        outcome(&mut a, "state", json!({"audio_muted": true})).await,
        "ok"
    );
    assert_eq!(
        outcome(&mut a, "message", json!({"content": "still here"})).await,
        "ok"
    );

    a.disconnect().await;
    b.disconnect().await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exit = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("the server stops on SIGTERM");
    assert!(exit.unwrap().unwrap().success());
}
