//! `switchboard call` and `answer` with `--tone`: each sends a sine tone through the
//! server's media relay and reports the frequency it decodes from the other.

use crate::common::{json_lines, run, serve_defaults, Proc};

/// `switchboard call` and `answer`, both forced to `transport`, send their tones
/// through the relay; what each decoded is the other's frequency. Returns the server's
/// `/metrics` text as it was once both media connections were up.
fn tones_through(tag: &str, transport: &str) -> String {
    let _slot = crate::common::slot();
    let (server, url, data) = serve_defaults(tag);
    tones(server, &url, &data, transport, None)
}

/// [`tones_through`] on a running `server` (base `url`, data dir `data`); with `ca`,
/// the clients and curl trust that CA.
fn tones(server: Proc, url: &str, data: &str, transport: &str, ca: Option<&str>) -> String {
    let (_, alice) = run(&["token", "--data-dir", data, "--user", "alice"]);
    let (_, bob) = run(&["token", "--data-dir", data, "--user", "bob"]);
    let env: Vec<(&str, &str)> = ca.map(|ca| ("SSL_CERT_FILE", ca)).into_iter().collect();
    let answer = Proc::spawn_with_env(
        &[
            "answer",
            "--server",
            url,
            "--service",
            "demo",
            "--user",
            "bob",
            "--token",
            &bob,
            "--wait",
            "--tone",
            "880",
            "--ice-transport",
            transport,
            // Long enough for a report or two after media is up on a busy machine.
            "--hangup-after",
            "5",
        ],
        &env,
    );
    answer.until("session_open");
    let call = Proc::spawn_with_env(
        &[
            "call",
            "--server",
            url,
            "--user",
            "alice",
            "--token",
            &alice,
            "--to",
            "bob",
            "--tone",
            "440",
            "--ice-transport",
            transport,
        ],
        &env,
    );
    let mut caller = call.until("media_connected");
    let mut callee = answer.until("media_connected");
    // A second of media first: the figures are published every 250 ms.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let metrics = std::process::Command::new("curl")
        .args(["-sf", &format!("{url}/metrics")])
        .args(ca.map(|ca| ["--cacert", ca]).into_iter().flatten())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    caller.extend(call.until("\"disconnected\""));
    callee.extend(answer.until("\"disconnected\""));
    let (caller, callee) = (json_lines(&caller), json_lines(&callee));
    let heard = |lines: &[serde_json::Value]| {
        lines.iter().filter(|l| l["event"] == "media").filter_map(|l| l["dominant_hz"].as_f64()).next_back()
    };
    let (by_alice, by_bob) = (heard(&caller), heard(&callee));
    assert!(by_alice.is_some_and(|hz| (hz - 880.0).abs() <= 10.0), "alice heard {by_alice:?}: {caller:#?}");
    assert!(by_bob.is_some_and(|hz| (hz - 440.0).abs() <= 10.0), "bob heard {by_bob:?}: {callee:#?}");
    let media = caller.iter().rfind(|l| l["event"] == "media").unwrap();
    assert!(
        media["packets_in"].as_u64().unwrap() > 50 && media["packets_out"].as_u64().unwrap() > 50,
        "{media}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(data);
    metrics
}

/// Open ICE-TCP connections in a `/metrics` text, every shard.
fn tcp_connections(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("switchboard_media_tcp_connections{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn cli_clients_hear_each_others_tones_over_udp() {
    let metrics = tones_through("tone-udp", "udp");
    assert_eq!(tcp_connections(&metrics), 0, "UDP only: no ICE-TCP connection");
}

/// ICE over TCP (RFC 6544): neither client offers a UDP candidate, so the media can
/// only go through the relay's passive TCP candidates.
#[test]
fn cli_clients_hear_each_others_tones_over_ice_tcp() {
    let metrics = tones_through("tone-tcp", "tcp");
    assert!(tcp_connections(&metrics) >= 2, "both clients on ICE-TCP: {metrics}");
}

/// A counter or gauge in a `/metrics` text, summed over its labels where `labels`
/// (a part of the label set) matches.
fn metric(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Through the server's TURN server (RFC 8656) over UDP: each client's only candidate
/// is its allocation's relayed address.
#[test]
fn cli_clients_hear_each_others_tones_through_turn_over_udp() {
    let metrics = tones_through("tone-turn-udp", "turn-udp");
    assert!(metric(&metrics, "switchboard_turn_allocations_total", "") >= 2, "{metrics}");
    assert!(metric(&metrics, "switchboard_turn_relayed_packets_total", "to_peer") > 0, "{metrics}");
}

/// The same through TURN over TCP.
#[test]
fn cli_clients_hear_each_others_tones_through_turn_over_tcp() {
    let metrics = tones_through("tone-turn-tcp", "turn-tcp");
    assert!(metric(&metrics, "switchboard_turn_allocations_live", "transport=\"tcp\"") >= 2, "{metrics}");
    assert!(metric(&metrics, "switchboard_turn_relayed_packets_total", "to_client") > 0, "{metrics}");
}

/// TLS in the server itself: the clients sign in over wss (trusting the test CA through
/// `SSL_CERT_FILE`, as the platform's roots would trust a real one) and relay their media
/// through TURN over TLS on that same port, the one port such a deployment opens.
#[test]
fn cli_clients_hear_each_others_tones_through_turn_over_tls_on_the_signaling_port() {
    let _slot = crate::common::slot();
    let (server, url, data, ca) = crate::common::serve_tls("tone-turn-tls");
    assert!(url.starts_with("https://"));
    let metrics = tones(server, &url, &data, "turn-tls", Some(&ca));
    assert!(metric(&metrics, "switchboard_turn_allocations_live", "transport=\"tls\"") >= 2, "{metrics}");
    assert!(metric(&metrics, "switchboard_turn_relayed_packets_total", "to_client") > 0, "{metrics}");
}

/// The CLI check for rooms: three `switchboard join` processes with different
/// tones; each reports the other two frequencies, under the other two users' names.
#[test]
fn three_cli_participants_hear_the_other_two() {
    let _slot = crate::common::slot();
    let (server, url, data) = serve_defaults("join");
    let users = [("ann", "440"), ("ben", "660"), ("cid", "880")];
    let procs: Vec<Proc> = users
        .iter()
        .map(|(user, hz)| {
            let (_, token) = run(&["token", "--data-dir", &data, "--user", user]);
            let p = Proc::spawn(&[
                "join",
                "--server",
                &url,
                "--user",
                user,
                "--token",
                &token,
                "--room",
                "band",
                "--tone",
                hz,
                "--leave-after",
                "12",
                "--display-name",
                user,
            ]);
            p.until("\"connected\"");
            p
        })
        .collect();
    for (i, p) in procs.iter().enumerate() {
        let (me, _) = users[i];
        // Reports come every second; once media settled, the others' tones are heard.
        let mut last = serde_json::Value::Null;
        for _ in 0..10 {
            let lines = json_lines(&p.until("\"media\""));
            last = lines.into_iter().rev().find(|l| l["event"] == "media").unwrap_or_default();
            // A full second of each: a peer whose media just started has few packets.
            let hears_both = users.iter().filter(|(u, _)| *u != me).all(|(u, hz)| {
                let want: f64 = hz.parse().unwrap_or_default();
                last["peers"][u]["dominant_hz"].as_f64().is_some_and(|got| (got - want).abs() <= 10.0)
                    && last["peers"][u]["packets_in"].as_u64().unwrap_or(0) >= 25
            });
            if hears_both {
                break;
            }
        }
        for (u, hz) in users.iter().filter(|(u, _)| *u != me) {
            let got = last["peers"][u]["dominant_hz"].as_f64();
            let want: f64 = hz.parse().unwrap_or_default();
            assert!(
                got.is_some_and(|g| (g - want).abs() <= 10.0),
                "{me} hears {u} at {got:?}, want {want}: {last}"
            );
            assert!(last["peers"][u]["packets_in"].as_u64().unwrap_or(0) >= 25, "{last}");
        }
    }
    // Leaving: each prints its own disconnected (NORMAL, participant) and exits.
    for p in &procs {
        let lines = json_lines(&p.until("\"disconnected\""));
        let end = lines.iter().rev().find(|l| l["event"] == "disconnected").cloned().unwrap_or_default();
        assert_eq!(end["reason"]["name"], "NORMAL", "{end}");
        assert_eq!(end["source"]["name"], "participant", "{end}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// `switchboard engine`, the three-party check: Alice calls Bob and Carol at
/// once; Bob's engine accepts after a second and Carol's rejects; Alice and Bob hear each
/// other's tones through the call's room; every event line carries seed 004's name and
/// the call's ID; Alice hangs up and all three exit 0.
#[test]
fn cli_engines_make_a_group_call_with_invitations() {
    let _slot = crate::common::slot();
    let (server, url, data) = serve_defaults("engine");
    let token = |user: &str| run(&["token", "--data-dir", &data, "--user", user]).1;
    let wait = |user: &str, args: &[&str]| {
        let t = token(user);
        let mut all = vec!["engine", "--server", &url, "--user", user, "--token", &t];
        all.extend_from_slice(args);
        let p = Proc::spawn(&all);
        p.until("session_open");
        p
    };
    let mut bob = wait("bob", &["--on-call", "accept", "--accept-after", "1", "--tone", "880"]);
    let mut carol = wait("carol", &["--on-call", "reject"]);
    let alice_token = token("alice");
    let mut alice = Proc::spawn(&[
        "engine",
        "--server",
        &url,
        "--user",
        "alice",
        "--token",
        &alice_token,
        "--calls",
        "bob,carol",
        "--tone",
        "440",
        "--timeout",
        "20",
        "--user-data",
        "standup",
        "--hangup-after",
        "6",
    ]);
    let caller = json_lines(&alice.until("\"onCallEnd\""));
    let callee = json_lines(&bob.until("\"onCallEnd\""));
    let rejecter = json_lines(&carol.until("\"onCallCancelled\""));
    let call_id =
        caller.iter().find(|l| l["event"] == "calls").and_then(|l| l["callId"].as_str()).expect("calls line");
    let event = |lines: &[serde_json::Value], name: &str| lines.iter().find(|l| l["event"] == name).cloned();
    let reject = event(&caller, "onUserReject").expect("alice hears carol's reject");
    assert_eq!((reject["userId"].as_str(), reject["callId"].as_str()), (Some("carol"), Some(call_id)));
    assert_eq!(event(&caller, "onCallBegin").expect("begin")["callRole"], 1);
    let received = event(&callee, "onCallReceived").expect("bob is rung");
    assert_eq!(received["calleeIdList"], serde_json::json!(["bob", "carol"]));
    assert_eq!(received["userData"], "standup");
    assert!(event(&callee, "onUserLeave").is_some_and(|l| l["userId"] == "alice"), "{callee:#?}");
    assert_eq!(event(&rejecter, "onCallCancelled").expect("carol's own")["userId"], "carol");
    let heard = |lines: &[serde_json::Value]| {
        lines.iter().filter(|l| l["event"] == "media").filter_map(|l| l["dominant_hz"].as_f64()).next_back()
    };
    let (by_alice, by_bob) = (heard(&caller), heard(&callee));
    assert!(by_alice.is_some_and(|hz| (hz - 880.0).abs() <= 10.0), "alice heard {by_alice:?}: {caller:#?}");
    assert!(by_bob.is_some_and(|hz| (hz - 440.0).abs() <= 10.0), "bob heard {by_bob:?}: {callee:#?}");
    assert_eq!((alice.exit_code(), bob.exit_code(), carol.exit_code()), (Some(0), Some(0), Some(0)));
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
