//! `switchboard call` and `answer` with `--tone`: each sends a sine tone through the
//! server's media relay and reports the frequency it decodes from the other.
#![cfg(feature = "tone")]

mod common;

use common::{json_lines, run, serve_defaults, Proc};

#[test]
fn cli_clients_hear_each_others_tones() {
    let (server, url, data) = serve_defaults("tone");
    let (_, alice) = run(&["token", "--data-dir", &data, "--user", "alice"]);
    let (_, bob) = run(&["token", "--data-dir", &data, "--user", "bob"]);
    let answer = Proc::spawn(&[
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
        "--tone",
        "880",
        "--hangup-after",
        "3",
    ]);
    answer.until("session_open");
    let call = Proc::spawn(&[
        "call", "--server", &url, "--user", "alice", "--token", &alice, "--to", "bob", "--tone", "440",
    ]);
    let caller = json_lines(&call.until("\"disconnected\""));
    let callee = json_lines(&answer.until("\"disconnected\""));
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
    let _ = std::fs::remove_dir_all(&data);
}
