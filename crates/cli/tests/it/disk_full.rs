//! The data directory's disk full, on the real binary: the data dir is a small tmpfs,
//! filled by a file while calls are live and callbacks are queued. New calls and room
//! joins are refused with SERVICE_BUSY; a live call still ends; once there is room again
//! every record is delivered exactly once (also after a restart) and new calls work.
//!
//! Mounting needs root (as CI runs); elsewhere the test says it skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{
    acme_config, acme_outbox_drained, acme_user as user, free_port, spawn_logged, wait_listening,
};
use switchboard_client::{ClientError, DisconnectReason, JoinConference, MakeCall};
use switchboard_tests::{disconnected, pick_up, AppServer};

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "switchboard-test"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the filesystem says it is full; the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
    written
}

fn service_busy<T>(r: Result<T, ClientError>) -> bool {
    matches!(r, Err(ClientError::Server { reason: Some(DisconnectReason::ServiceBusy), .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_disk_refuses_new_calls_and_loses_nothing() {
    let _slot = crate::common::slot();
    let dir = std::env::temp_dir().join(format!("switchboard-diskfull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let Some(_mount) = Tmpfs::mount(&data, "8m") else {
        eprintln!(
            "SKIPPED a_full_data_disk_refuses_new_calls_and_loses_nothing: cannot mount a tmpfs (needs root)"
        );
        return;
    };
    let (port, app_port) = (free_port(), free_port());
    let config = dir.join("switchboard.toml");
    std::fs::write(&config, acme_config(port, app_port, &data, "min_free_disk_bytes = 1048576\n")).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut app = AppServer::start_on(format!("127.0.0.1:{app_port}").parse().unwrap()).await;
    let mut server = spawn_logged(&config, &dir.join("first.log"));
    wait_listening(port).await;

    let (alice, mut alice_ev) = user(&url, "alice").await;
    let (bob, mut bob_ev) = user(&url, "bob").await;
    let (carol, mut carol_ev) = user(&url, "carol").await;
    let (dave, mut dave_ev) = user(&url, "dave").await;
    // A call live through the whole outage.
    let live = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    assert_eq!(pick_up(&bob, &mut bob_ev, &mut alice_ev).await, live);
    // A call ended while the app server is down: its record waits in the outbox.
    app.stop().await;
    let queued = carol.make_call(MakeCall::audio("dave")).await.unwrap();
    assert_eq!(pick_up(&dave, &mut dave_ev, &mut carol_ev).await, queued);
    carol.end_call(&queued, None, None).await.unwrap();
    disconnected(&mut dave_ev).await;

    // The disk fills up.
    let filler = data.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0, "nothing written: the tmpfs was already full");
    // The server reads the free space once a second (a disk rarely fills faster).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = carol.make_call(MakeCall::audio("dave")).await;
    assert!(service_busy(r.clone()), "make_call on a full disk: {r:?}");
    assert!(
        service_busy(carol.join_conference(JoinConference::audio("full-disk-room")).await),
        "join_conference was not refused with SERVICE_BUSY on a full disk"
    );
    // No push went out for a refused call.
    assert!(app
        .hits_on("/notify")
        .iter()
        .all(|h| h.query.get("to_user_id").map(String::as_str) != Some("dave")));

    // The live call ends while the disk is still full; its end may wait for room.
    let hang_up = tokio::spawn(async move {
        bob.end_call(&live, None, None).await.expect("end the live call");
        (bob, live)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Room again, and the app server back.
    std::fs::remove_file(&filler).unwrap();
    app.restart().await;
    let (bob, live) = tokio::time::timeout(Duration::from_secs(15), hang_up).await.expect("hung up").unwrap();
    let ended = disconnected(&mut alice_ev).await;
    assert_eq!(ended.reason, DisconnectReason::Normal);
    let mut fresh = None;
    for _ in 0..40 {
        match carol.make_call(MakeCall::audio("dave")).await {
            Ok(sid) => {
                fresh = Some(sid);
                break;
            }
            Err(e) => assert!(
                matches!(e, ClientError::Server { reason: Some(DisconnectReason::ServiceBusy), .. }),
                "{e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = fresh.expect("new calls are accepted again once there is room");
    assert_eq!(pick_up(&dave, &mut dave_ev, &mut carol_ev).await, fresh);
    dave.end_call(&fresh, None, None).await.unwrap();

    for sid in [&queued, &live, &fresh] {
        let r = app.record_for(sid).await;
        assert_eq!(r.query["disconnect_reason"], "1001", "{sid}");
    }
    // Exactly once, and still once after a restart (the delivery was written down).
    // Delivered means written down as delivered: nothing pending in the outbox.
    acme_outbox_drained(&url).await;
    let mut counts = app.success_counts();
    server.kill();
    let mut server = spawn_logged(&config, &dir.join("second.log"));
    wait_listening(port).await;
    // What the restart found pending is delivered (none should be).
    acme_outbox_drained(&url).await;
    let after = app.success_counts();
    for (id, n) in &after {
        assert_eq!(*n, 1, "{id} delivered {n} times");
    }
    counts.retain(|id, _| id.starts_with("call-"));
    assert_eq!(counts.len(), 3, "one record per call: {counts:?}");
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
    assert!(log.contains("free disk space is below min_free_disk_bytes"), "{log}");
    assert!(log.contains("new calls are accepted again"), "{log}");
    drop(bob);
    server.kill();
    drop(_mount);
    if std::env::var_os("KEEP_TEST_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
