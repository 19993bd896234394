//! Every committed fuzz input, replayed through what its target checks, on stable: the
//! regression value of the fuzzers (each input that found new behaviour, and each that
//! once broke something) in every test run, at a fraction of a sanitizer build's cost.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["corpus", "seeds"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else { continue };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target} fails on {}", file.display());
            n += 1;
        }
    }
    n
}

fn replay_target(name: &str) {
    let (_, check) = switchboard_fuzz_checks::TARGETS
        .into_iter()
        .find(|(t, _)| *t == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let n = replay(name, check);
    assert!(n > 0, "no corpus for {name}: fuzz/corpus/{name}/ is committed with the repository");
    eprintln!("{name}: {n} inputs replayed");
}

#[test]
fn signal_message_corpus() {
    replay_target("signal_message");
}

#[test]
fn cc_param_corpus() {
    replay_target("cc_param");
}

#[test]
fn token_corpus() {
    replay_target("token");
}

#[test]
fn relay_sdp_corpus() {
    replay_target("relay_sdp");
}

#[test]
fn callback_query_corpus() {
    replay_target("callback_query");
}

#[test]
fn every_target_is_replayed() {
    let names: Vec<&str> = switchboard_fuzz_checks::TARGETS.iter().map(|(t, _)| *t).collect();
    assert_eq!(names, ["signal_message", "cc_param", "token", "relay_sdp", "callback_query"]);
}
