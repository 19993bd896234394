#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer, AddressSanitizer) over the targets in fuzz/.
#   bash scripts/fuzz.sh smoke        each target for 10 s (the committed corpus in
#                                     fuzz/corpus/ is replayed on stable by every
#                                     test run: crates/fuzz-checks)
#   bash scripts/fuzz.sh long [RUNS] [TARGET...]
#                                     each target (default: all) for RUNS executions
#                                     (default 10,000,000), at most FUZZ_MAX_SECS seconds
#                                     each if set; results go in docs/reliability.md;
#                                     minimize what it found (cargo fuzz cmin TARGET)
#                                     before committing fuzz/corpus/
# cargo fuzz needs a nightly toolchain: without one this says so and skips.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
mode=${1:-smoke}
runs=${2:-10000000}
targets=(signal_message cc_param token relay_sdp callback_query)
if [ $# -gt 2 ]; then targets=("${@:3}"); fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: SKIPPED all ${#targets[@]} targets: no nightly Rust toolchain (cargo fuzz needs one; rustup toolchain install nightly)"
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

passed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  case $mode in
    smoke) limit=(-max_total_time=10) ;;
    long) limit=(-runs="$runs")
      # FUZZ_MAX_SECS caps each target's time too (relay_sdp runs ~200/s here).
      [ -n "${FUZZ_MAX_SECS:-}" ] && limit+=(-max_total_time="$FUZZ_MAX_SECS") ;;
    *) echo "usage: fuzz.sh smoke | long [RUNS]" >&2; exit 2 ;;
  esac
  log=$(mktemp)
  start=$(date +%s)
  if ! cargo +nightly fuzz run "$t" "${dirs[@]}" -- "${limit[@]}" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t FAILED; the input that broke it is in fuzz/artifacts/$t/"
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz: $t ok: $execs executions in $(( $(date +%s) - start )) s, corpus $(ls "corpus/$t" | wc -l) inputs"
  rm -f "$log"
  passed=$((passed + 1))
done
echo "fuzz: $passed passed, 0 failed"
