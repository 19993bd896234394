//! Processes the tests start that must not outlive them (a database server, say): the
//! kernel signals each when the thread that started it ends, and that thread lives as
//! long as the test process.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;

/// Spawns `cmd`, to get `signal` when the test process ends.
pub fn spawn(mut cmd: Command, signal: i32) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, signal);
                Ok(())
            });
        }
        let _ = tx.send(cmd.spawn());
        loop {
            std::thread::park();
        }
    });
    rx.recv().map_err(std::io::Error::other)?
}
