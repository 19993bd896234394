#!/usr/bin/env bash
# Installs what the tests need and runs every test. Used by the README and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# libopus for the test tones (the opus crate links Debian's library through pkg-config).
pkg-config --exists opus 2>/dev/null || need_apt+=(libopus-dev)
# Browser tests: Debian's Chromium (no browser downloads by test tools) and Node.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# Calls through networks that drop UDP: a network namespace of the test's own
# (`unshare -n`, `ip`) whose firewall nftables sets.
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# An independent TURN client against the embedded TURN server (coturn's turnutils_uclient).
command -v turnutils_uclient >/dev/null 2>&1 || need_apt+=(coturn)
# A test CA and certificates for TLS in the server (scripts/test-certs.sh).
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# PostgreSQL, the store of a deployment of several nodes: the tests start clusters of
# their own (tests/src/postgres.rs), so the package's default cluster is not created.
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  need_apt+=(postgresql)
  mkdir -p /etc/postgresql-common
  grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
    echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
fi
# Redis, which joins the nodes of a deployment (the tests start servers of their own).
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# mold links the test binaries (about 15 s of a fresh build less than with ld).
command -v mold >/dev/null 2>&1 || need_apt+=(mold)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install the Rust toolchain (rustup) first" >&2
  exit 1
fi

# A fresh build is faster without incremental compilation (CI always builds fresh);
# set CARGO_INCREMENTAL=1 to keep it while iterating.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
if command -v mold >/dev/null 2>&1; then
  export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=mold"
fi

# Each stage's wall time, printed at the end (and when a stage fails).
stages=()
stage() {
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  if "$@"; then
    stages+=("$(printf '%-12s %4d s' "$name" $((SECONDS - start)))")
  else
    local rc=$?
    stages+=("$(printf '%-12s %4d s  FAILED' "$name" $((SECONDS - start)))")
    summary
    exit $rc
  fi
}
summary() {
  echo "== stage times"
  printf '  %s\n' "${stages[@]}"
  echo "  total        $(printf '%4d' "$SECONDS") s"
}

# Unit, scenario and CLI tests; the fuzz corpus replayed through each target's checks
# (crates/fuzz-checks: the sanitizer runs are `bash scripts/fuzz.sh smoke` / `long`).
# Eight test threads on two cores: most scenario tests wait on sockets and timers (the
# scenario binary: 33 s with four, 23 s with eight); the CLI's tests, which start
# processes, take a slot of four among themselves (crates/cli/tests/it/common.rs).
#
# Built once, then run as `cargo test` would run them (each binary from its package's
# directory). The scenario tests (real-time media, packet counts) run first, with only
# the tests that keep no wall-clock time beside them at a lower priority. Then the CLI's
# tests, and beside them at a lower priority the browser file that checks no media
# quality, the namespace tests (ice-tcp.test.js: ICE-TCP and TURN behind a firewall, in
# a network namespace and a Chromium of their own), which spend most of their time
# waiting for Chromium's ICE timeouts. The other browser
# tests run after, alone: their media checks want the CPU (beside a Chromium, the
# scenario tests' packet counts came up short in two runs of five: Chromium's audio
# threads run at a real-time priority that nice does not lower). The namespace tests
# outlast the CLI's by half a minute: the engine's browser tests, whose checks hear
# tones but measure nothing finer, run in that time (they passed beside a second
# Chromium in the run that tried it; the simulcast test did not, so it stays alone).
BESIDE_RUST="ice-tcp.test.js"
# The SDK package's types (npm pack and a strict TypeScript build: CPU, no browser) go
# beside the scenario tests with the other tests that keep no wall-clock time.
QUIET_JS="types.test.js"
# The browsers in a deployment of two nodes (cluster.test.js: a node killed under a call)
# hear tones and measure nothing finer either: after the engine's, beside the same.
AFTER_CLI="engine.test.js cluster.test.js"
build_tests() {
  mkdir -p target
  cargo test --workspace --all-features --locked --no-run --message-format=json-render-diagnostics \
    > target/test-artifacts.json
}
# The test binaries, as "dir exe" lines, filtered by `grep -E "$@"`.
test_bins() {
  local line exe dir
  while IFS= read -r line; do
    case $line in *'"test":true},"features"'*'"executable":"'*) ;; *) continue ;; esac
    exe=${line#*\"executable\":\"}; exe=${exe%%\"*}
    dir=${line#*\"manifest_path\":\"}; dir=$(dirname "${dir%%\"*}")
    echo "$dir $exe"
  done < target/test-artifacts.json | grep -E "$@"
}
# Runs the test binaries of `test_bins "$@"` one after the other.
run_bins() {
  local dir exe failed=0
  while read -r dir exe; do
    echo "== $(basename "$exe") ($dir)"
    (cd "$dir" && "$exe" --test-threads 8) || failed=1
  done < <(test_bins "$@")
  [ $failed -eq 0 ]
}
# The binaries whose tests keep no wall-clock time (unit tests on simulated time, the
# fuzz corpus, property tests, the doc example) run beside the scenario tests at a
# lower priority, in two lines (the corpus alone takes as long as the rest): together
# they outlasted the scenario tests by 15-20 s.
quiet_corpus() {
  run_bins '^[^ ]*/crates/fuzz-checks '
}
quiet_units() {
  run_bins '^[^ ]*/crates/(protocol|client|server) ' || return 1
  # The SDK's doc example, compiled as `cargo test` would.
  cargo test --doc --workspace --all-features --locked
}
rust_tests() {
  local log="$PWD/target/e2e-netns.log" ns corpus units cluster rc=0 netns=0
  wait_npm || return 1
  nice -n 10 bash -c "$(declare -f test_bins run_bins quiet_corpus); quiet_corpus" > target/quiet-corpus.log 2>&1 &
  corpus=$!
  nice -n 10 bash -c "$(declare -f test_bins run_bins quiet_units); quiet_units && cd tests/e2e && node --test $QUIET_JS" > target/quiet-units.log 2>&1 &
  units=$!
  run_bins '^[^ ]*/tests ' || rc=1
  # They finish before the CLI's start: with them, the namespace tests' Chromium and
  # the CLI's processes all at once, a CLI once got three one-second ticks in 15 s.
  wait $corpus || rc=1
  wait $units || rc=1
  echo "== the tests that keep no wall-clock time (run beside the scenario tests)"
  cat target/quiet-corpus.log target/quiet-units.log
  (cd tests/e2e && SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" nice -n 10 node --test $BESIDE_RUST > "$log" 2>&1) &
  ns=$!
  # The CLI's tests; then its deployments of several nodes (crates/cli/tests/cluster:
  # beside them, the tone tests' packet counts came up short) together with the
  # engine's browser tests (both hear tones, neither counts packets; they passed together
  # in the trials, in 35 s instead of 67 s one after the other).
  run_bins '^[^ ]*/crates/cli [^ ]*/(it|switchboard)-' || rc=1
  run_bins '^[^ ]*/crates/cli [^ ]*/cluster-' > target/cluster-tests.log 2>&1 &
  cluster=$!
  (cd tests/e2e && SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" node --test $AFTER_CLI) || rc=1
  wait $cluster || rc=1
  echo "== the CLI's deployments of several nodes (run beside the engine's browser tests)"
  cat target/cluster-tests.log
  wait $ns || netns=$?
  echo "== browser tests run beside the CLI's ($BESIDE_RUST)"
  cat "$log"
  [ $rc -eq 0 ] && [ $netns -eq 0 ]
}
# The browser tests' npm packages, fetched while the build runs.
npm_log="$PWD/target/npm-ci.log"
mkdir -p target
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error) > "$npm_log" 2>&1 &
npm_pid=$!
wait_npm() {
  local rc=0
  wait $npm_pid || rc=$?
  cat "$npm_log"
  [ $rc -eq 0 ] || echo "npm ci failed" >&2
  return $rc
}
stage build build_tests
stage rust-tests rust_tests
# The browser tests drive the server binary built above.
browser() {
  local files
  files=$(cd tests/e2e && ls ./*.test.js | grep -v -E "/($(echo "$BESIDE_RUST $AFTER_CLI $QUIET_JS" | sed 's/\./\\./g; s/ /|/g'))\$")
  (cd tests/e2e && SWITCHBOARD_BIN="$PWD/../../target/debug/switchboard" node --test $files)
}
stage browser browser
summary
