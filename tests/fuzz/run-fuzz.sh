#!/usr/bin/env bash
# tests/fuzz/run-fuzz.sh — build the protocol's libFuzzer target with clang
# and run it for a bounded time.
#
#   run-fuzz.sh [OUTDIR] [SECONDS]
#
# OUTDIR (default: a temporary directory) receives the binary, the corpus
# grown during the run and any crash artifact; the seed corpus in
# tests/fuzz/corpus/request is read, never written.  SECONDS defaults to
# $FUZZ_SECONDS or 60.  The project itself is built with gcc; this script
# compiles the protocol sources again with clang -fsanitize=fuzzer,address,
# undefined and -DISVD_PROTO_TESTING (allocation counters that the target
# checks).  Memory is bounded: one allocation over -malloc_limit_mb, or RSS
# over -rss_limit_mb, fails the run, as do crashes, leaks and UB.
# Exit status: 0 clean, 1 a finding or a build failure, 77 no clang/runtime.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-}
secs=${2:-${FUZZ_SECONDS:-60}}
CLANG=${CLANG:-clang}

if ! command -v "$CLANG" >/dev/null; then
	echo "run-fuzz.sh: $CLANG not found; skipping" >&2
	exit 77
fi
rt="$("$CLANG" -print-resource-dir)/lib/linux/libclang_rt.fuzzer-$(uname -m).a"
if [[ ! -f "$rt" ]]; then
	echo "run-fuzz.sh: no libFuzzer runtime ($rt); install libclang-rt-14-dev; skipping" >&2
	exit 77
fi
if [[ -z "$out" ]]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out/corpus"

bin=$out/fuzz_request
# shellcheck disable=SC2046
"$CLANG" -std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DISVD_PROTO_TESTING \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-Wall -Wextra -Werror \
	-I"$root/protocol" $(pkg-config --cflags msgpack) \
	"$here/fuzz_request.c" "$root"/protocol/{error,reader,encode,decode}.c \
	$(pkg-config --libs msgpack) -lm -o "$bin"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:detect_leaks=1:quarantine_size_mb=64
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1:print_stacktrace=1

echo "run-fuzz.sh: fuzzing the request decoder for ${secs}s" >&2
"$bin" "$out/corpus" "$here/corpus/request" \
	-max_total_time="$secs" -max_len=65536 -timeout=10 \
	-rss_limit_mb=512 -malloc_limit_mb=64 \
	-print_final_stats=1 -artifact_prefix="$out/"
