//! An independent TURN client, coturn's `turnutils_uclient` (Debian `coturn`), against
//! the server's embedded TURN server: with the credentials a `welcome` hands out it
//! allocates and relays to the relay's media address; with a wrong password, or
//! credentials that expired, it gets nothing; a channel to any other address is
//! refused. The server's `/metrics` says what the TURN server did.

use std::process::Command;

use crate::common::{acme_config, acme_user, free_port, spawn_logged, wait_listening};

/// One run of `turnutils_uclient` to the relay address `peer`; its output.
fn uclient(turn_port: u16, user: &str, password: &str, peer_port: u16, extra: &[&str]) -> String {
    let port = turn_port.to_string();
    let peer = peer_port.to_string();
    let mut args = vec!["-c", "-L", "127.0.0.1", "-u", user, "-w", password, "-p", &port];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-e", "127.0.0.1", "-r", &peer, "-n", "20", "-z", "5", "127.0.0.1"]);
    let out =
        Command::new("turnutils_uclient").args(&args).output().expect("turnutils_uclient (Debian coturn)");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn metrics(url: &str) -> String {
    let out = Command::new("curl").args(["-sf", &format!("{url}/metrics")]).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn metric(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturns_client_relays_to_the_media_address_only_and_with_good_credentials_only() {
    let _slot = crate::common::slot();
    let dir = std::env::temp_dir().join(format!("switchboard-turn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (port, app_port, media_port, turn_port) = (free_port(), free_port(), free_port(), free_port());
    let config = dir.join("switchboard.toml");
    let top = format!("media_bind = \"127.0.0.1:{media_port}\"\nmedia_shards = 1\nturn_port = {turn_port}\n");
    std::fs::write(&config, acme_config(port, app_port, &dir.join("data"), &top)).unwrap();
    let server = spawn_logged(&config, &dir.join("server.log"));
    wait_listening(port).await;
    let url = format!("http://127.0.0.1:{port}");
    // The credentials a client gets in its welcome.
    let (alice, _events) = acme_user(&url, "alice").await;
    let ice = alice.ice_servers().first().cloned().expect("a TURN server in welcome");
    assert!(ice.urls.contains(&format!("turn:127.0.0.1:{turn_port}?transport=udp")), "{:?}", ice.urls);

    // Good credentials, the media address: allocated, and every packet relayed to it
    // (no answer comes back: the relay drops what no connection of its claims). The
    // figures are published every 250 ms.
    // Both at once: each waits some 12 s for answers the relay never sends.
    let uclient_with = |extra: &'static [&'static str]| {
        let ice = ice.clone();
        tokio::task::spawn_blocking(move || {
            uclient(turn_port, &ice.username, &ice.credential, media_port, extra)
        })
    };
    let (udp, tcp) = (uclient_with(&["-s"]), uclient_with(&["-s", "-t"]));
    let (udp, tcp) = (udp.await.unwrap(), tcp.await.unwrap());
    for out in [&udp, &tcp] {
        assert!(out.contains("tot_send_msgs=20") && !out.contains("error"), "{out}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let m = metrics(&url);
    assert!(metric(&m, "switchboard_turn_allocations_total", "") >= 2, "{m}");
    assert!(metric(&m, "switchboard_turn_relayed_packets_total", "to_peer") >= 40, "{m}");
    assert!(metric(&m, "switchboard_media_dropped_total", "bad_input") >= 40, "the relay received them: {m}");

    // A wrong password, and credentials that expired an hour ago: 401, nothing.
    let refused = |out: &str| out.contains("Cannot complete Allocation") && !out.contains("tot_send_msgs");
    let wrong = uclient(turn_port, &ice.username, "not-the-password", media_port, &["-s"]);
    assert!(refused(&wrong), "{wrong}");
    let secret = switchboard_server::turn::secret(
        &switchboard_server::config::server_secret(&dir.join("data")).unwrap(),
    );
    let now = switchboard_server::server::now_ms() / 1000;
    let (stale_user, stale_password) =
        switchboard_server::turn::credentials(&secret, "acme:alice", now - 7200, 3600);
    let stale = uclient(turn_port, &stale_user, &stale_password, media_port, &["-s"]);
    assert!(refused(&stale), "{stale}");

    // A channel to anything but the media address (here the relay's port + 1, as an
    // RTCP pair would ask): 403.
    let elsewhere = uclient(turn_port, &ice.username, &ice.credential, media_port + 1, &[]);
    assert!(elsewhere.contains("403"), "{elsewhere}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let m = metrics(&url);
    assert!(metric(&m, "switchboard_turn_refused_total", "unauthorized") >= 2, "{m}");
    assert!(metric(&m, "switchboard_turn_refused_total", "forbidden") >= 1, "{m}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// TURN over TLS, by the same independent client (`-S`): on the server's own TLS listener,
/// which also serves https (a STUN message after the handshake goes to TURN, a request to
/// HTTP), and on TURN's TLS port of its own. Both allocate and relay to the media address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturns_client_relays_over_tls_on_the_signaling_port_and_on_turns_own() {
    let _slot = crate::common::slot();
    let dir = std::env::temp_dir().join(format!("switchboard-turn-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ca, cert, key) = crate::common::test_certs(&dir.join("tls"));
    let (port, app_port, media_port, turn_port, tls_port) =
        (free_port(), free_port(), free_port(), free_port(), free_port());
    let config = dir.join("switchboard.toml");
    let top = format!(
        "media_bind = \"127.0.0.1:{media_port}\"\nmedia_shards = 1\nturn_port = {turn_port}\n\
         tls_cert = \"{cert}\"\ntls_key = \"{key}\"\nturn_tls_port = {tls_port}\n"
    );
    std::fs::write(&config, acme_config(port, app_port, &dir.join("data"), &top)).unwrap();
    let server = spawn_logged(&config, &dir.join("server.log"));
    wait_listening(port).await;
    let url = format!("https://127.0.0.1:{port}");
    let curl = |path: &str| {
        let out = Command::new("curl").args(["-sf", "--cacert", &ca, &format!("{url}{path}")]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default()
    };
    assert_eq!(curl("/healthz"), "ok", "https on the listener");
    let secret = switchboard_server::turn::secret(
        &switchboard_server::config::server_secret(&dir.join("data")).unwrap(),
    );
    let now = switchboard_server::server::now_ms() / 1000;
    let (user, password) = switchboard_server::turn::credentials(&secret, "acme:alice", now, 3600);
    // Both at once: each waits some 12 s for answers the relay never sends.
    let uclient_at = |at: u16| {
        let (user, password) = (user.clone(), password.clone());
        tokio::task::spawn_blocking(move || uclient(at, &user, &password, media_port, &["-s", "-t", "-S"]))
    };
    let (shared, own) = (uclient_at(port), uclient_at(tls_port));
    let (shared, own) = (shared.await.unwrap(), own.await.unwrap());
    // (It tries TLS 1.0 and 1.1 first, which are refused: those lines say "error".)
    for out in [&shared, &own] {
        assert!(out.contains("tot_send_msgs=20") && !out.contains("Cannot complete Allocation"), "{out}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let m = curl("/metrics");
    assert!(metric(&m, "switchboard_turn_allocations_total", "") >= 2, "{m}");
    assert!(metric(&m, "switchboard_turn_relayed_packets_total", "to_peer") >= 40, "{m}");
    // And the listener still serves https after those connections went to TURN.
    assert_eq!(curl("/healthz"), "ok");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
