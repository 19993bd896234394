//! The `switchboard` binary as a newcomer uses it: `serve` on embedded defaults,
//! `token`, then `answer` and `call` printing JSON lines.

use crate::common::{json_lines, run, Proc};

/// Reason and source names of the disconnect `p` prints when its call ends.
fn ended(p: &Proc) -> (String, String) {
    let lines = json_lines(&p.until("\"disconnected\""));
    let end = lines.iter().rev().find(|l| l["event"] == "disconnected").cloned().unwrap_or_default();
    let name = |v: &serde_json::Value| v["name"].as_str().unwrap_or_default().to_string();
    (name(&end["reason"]), name(&end["source"]))
}

#[test]
fn serve_on_embedded_defaults_then_call_and_answer_from_the_cli() {
    let _slot = crate::common::slot();
    let dir = std::env::temp_dir().join(format!("switchboard-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.to_string_lossy().to_string();
    let server = Proc::spawn(&["serve", "--data-dir", &data, "--listen", &listen]);
    let banner = server.until("listening on");
    assert!(banner.iter().any(|l| l.contains("demo service: id=demo")), "{banner:#?}");
    assert!(dir.join("demo-service.json").exists());
    assert!(dir.join("switchboard.db").exists());
    // Piped, not a terminal: plain text, no colour codes.
    assert!(!banner.iter().any(|l| l.contains('\u{1b}')), "ANSI codes in a piped log: {banner:#?}");

    let (ok, alice) = run(&["token", "--data-dir", &data, "--user", "alice"]);
    assert!(ok && alice.split('.').count() == 3, "{alice}");
    let (_, bob) = run(&["token", "--data-dir", &data, "--user", "bob"]);
    let url = format!("http://{listen}");

    let answer = Proc::spawn(&[
        "answer",
        "--server",
        &url,
        "--user",
        "bob",
        "--token",
        &bob,
        "--wait",
        "--hangup-after",
        "0.3",
    ]);
    let mut callee_lines = answer.until("session_open");
    let ws = format!("ws://{listen}");
    let call = Proc::spawn(&[
        "call",
        "--server",
        &ws,
        "--user",
        "alice",
        "--token",
        &alice,
        "--to",
        "bob",
        "--app-data",
        "cli",
    ]);
    let caller = json_lines(&call.until("\"disconnected\""));
    callee_lines.extend(answer.until("\"disconnected\""));
    let callee = json_lines(&callee_lines);
    let events = |v: &[serde_json::Value]| {
        v.iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>()
    };
    assert_eq!(
        events(&caller),
        ["session_open", "call_created", "wait_connected", "connected", "disconnected"]
    );
    assert_eq!(events(&callee), ["session_open", "incoming_call", "verified", "connected", "disconnected"]);
    let end = &caller[4];
    assert_eq!(
        (end["reason"]["name"].as_str(), end["source"]["name"].as_str()),
        (Some("NORMAL"), Some("callee"))
    );
    assert_eq!(end["by_remote"], true);
    assert_eq!(callee[1]["app_data"], "cli");

    // A start failure is one JSON line and a non-zero exit.
    let (ok, out) = run(&["call", "--server", &url, "--user", "alice", "--token", &alice, "--to", "alice"]);
    assert!(!ok);
    assert!(out.contains(r#""reason":"id_conflict""#), "{out}");
    // A bad token is refused with its reason.
    let (ok, out) = run(&["call", "--server", &url, "--user", "alice", "--token", "x.y.z", "--to", "bob"]);
    assert!(!ok);
    assert!(out.contains("SERVICE_ACCESS_TOKEN_ERROR"), "{out}");
    let (ok, _) = run(&["token", "--data-dir", &data, "--service", "nope", "--user", "x"]);
    assert!(!ok);
    // `token` in a directory with no server: it creates no credentials (the server would
    // refuse tokens signed with them) and says where it looked.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = std::process::Command::new(crate::common::BIN)
        .args(["token", "--user", "alice"])
        .current_dir(&elsewhere)
        .output()
        .expect("run switchboard token");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("data/demo-service.json") && stderr.contains("switchboard serve"), "{stderr}");
    assert!(!elsewhere.join("data").exists(), "token created a data dir");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C on a ringing `call` cancels it (the callee hears CANCEL, not NOANSWER later);
/// Ctrl-C on `answer` while it rings there declines it; SIGTERM on a connected call hangs
/// up; Ctrl-C on `join` leaves the room. The exit code is 0 for the side that meant it.
#[test]
fn ctrl_c_and_sigterm_end_calls_and_rooms_as_meant_with_exit_codes() {
    let _slot = crate::common::slot();
    let (server, url, data) = crate::common::serve_defaults("ctrlc");
    let (_, bob) = run(&["token", "--data-dir", &data, "--user", "bob"]);
    let (_, alice) = run(&["token", "--data-dir", &data, "--user", "alice"]);
    let wait_bob = |accept_after: &str| {
        let p = Proc::spawn(&[
            "answer",
            "--server",
            &url,
            "--service",
            "demo",
            "--user",
            "bob",
            "--token",
            &bob,
            "--wait",
            "--accept-after",
            accept_after,
        ]);
        p.until("session_open");
        p
    };
    let mut callee = wait_bob("60");
    let mut caller =
        Proc::spawn(&["call", "--server", &url, "--user", "alice", "--token", &alice, "--to", "bob"]);
    caller.until("wait_connected");
    callee.until("verified");
    caller.interrupt();
    assert_eq!(ended(&caller), ("CANCEL".to_string(), "caller".to_string()));
    let end = json_lines(&callee.until("\"disconnected\""));
    assert!(end.iter().any(|l| l["reason"]["name"] == "CANCEL"), "{end:?}");
    // Exit codes: 0 for the one who meant it, 2 for the one it happened to.
    assert_eq!((caller.exit_code(), callee.exit_code()), (Some(0), Some(2)));

    // Now bob interrupts while it rings at his end: DECLINE.
    let mut callee = wait_bob("60");
    let mut caller =
        Proc::spawn(&["call", "--server", &url, "--user", "alice", "--token", &alice, "--to", "bob"]);
    callee.until("verified");
    callee.interrupt();
    assert_eq!(ended(&caller), ("DECLINE".to_string(), "callee".to_string()));
    assert_eq!((callee.exit_code(), caller.exit_code()), (Some(0), Some(2)));

    // A connected call: SIGTERM (a service manager stopping the caller) hangs up: NORMAL.
    let mut callee = wait_bob("0");
    let mut caller =
        Proc::spawn(&["call", "--server", &url, "--user", "alice", "--token", &alice, "--to", "bob"]);
    caller.until("\"connected\"");
    caller.terminate();
    assert_eq!(ended(&callee), ("NORMAL".to_string(), "caller".to_string()));
    assert_eq!((caller.exit_code(), callee.exit_code()), (Some(0), Some(0)));

    // A room: Ctrl-C leaves it (the other participant sees the leave), exit code 0.
    let join = |user: &str, token: &str| {
        let p =
            Proc::spawn(&["join", "--server", &url, "--user", user, "--token", token, "--room", "standup"]);
        p.until("\"connected\"");
        p
    };
    let mut ann = join("alice", &alice);
    let ben = join("bob", &bob);
    ann.until("peer_list_updated");
    ann.interrupt();
    let seen = json_lines(&ben.until("\"removed\":[\"alice\"]"));
    assert!(seen.iter().any(|l| l["event"] == "peer_list_updated"), "{seen:?}");
    assert_eq!(ann.exit_code(), Some(0));
    ben.interrupt();

    // The records the app server reads: hung up by the caller, declined by the callee,
    // cancelled by the caller (reason, source).
    let records = crate::common::records(&url, &data, "alice");
    let mut seen: Vec<(u64, u64)> = records
        .iter()
        .filter_map(|r| Some((r["disconnect_reason"].as_u64()?, r["releaser_type"].as_u64()?)))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [(1001, 2), (1002, 1), (1201, 2)], "{records:#?}");
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
