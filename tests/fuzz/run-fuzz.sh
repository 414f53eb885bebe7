#!/usr/bin/env bash
# tests/fuzz/run-fuzz.sh — build one libFuzzer target with clang and run it
# for a bounded time.
#
#   run-fuzz.sh [OUTDIR] [SECONDS]        target $FUZZ_TARGET (default request)
#
# Targets (each fuzz_TARGET.c, seeds in corpus/TARGET, kept crashes in
# regressions/TARGET):
#   request  the protocol's request/reply/snapshot decoders (protocol/)
#   config   isvdd's YAML configuration loader (daemon/config.c)
#   wal      the write-ahead log reader (daemon/wal.c)
#   ckpt     the checkpoint reader and the engine's image loader
#            (daemon/ckpt.c, update/image.c)
#
# OUTDIR (default: a temporary directory) receives the binary, the corpus
# grown during the run and any crash artifact; the seed corpus and the
# regressions are read, never written, except that a new finding is copied
# into regressions/TARGET/ (unless FUZZ_KEEP=0) so that it is replayed by
# the fuzz_replay_TARGET test from then on: commit it with the fix.
# SECONDS defaults to $FUZZ_SECONDS or 60.  The project itself is built with
# gcc; this script compiles the sources under test again with clang
# -fsanitize=fuzzer,address,undefined (and -DISVD_PROTO_TESTING for the
# protocol's allocation counters).  Memory is bounded: one allocation over
# -malloc_limit_mb, or RSS over -rss_limit_mb, fails the run, as do
# crashes, leaks and UB.
# Exit status: 0 clean; 1 a finding of any kind (libFuzzer runs with
# -error_exitcode=1 and -timeout_exitcode=1, and every other non-zero
# status of the fuzzer, an OOM or a leak found at exit included, is
# turned into 1) or a build failure; 77 only when clang or its libFuzzer
# runtime is missing (meson counts 77 as a skip; scripts/test refuses to
# run without the toolchain, so there it never happens).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-}
secs=${2:-${FUZZ_SECONDS:-60}}
target=${FUZZ_TARGET:-request}
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
mkdir -p "$out/corpus-$target"

blas() {   # CBLAS + LAPACKE flags, as the root meson.build finds them
	if pkg-config --exists openblas; then pkg-config "$@" openblas lapacke
	else pkg-config "$@" cblas lapacke; fi
}

# shellcheck disable=SC2046
case $target in
request)
	srcs=("$here/fuzz_request.c" "$root"/protocol/{error,reader,encode,decode}.c)
	flags=(-DISVD_PROTO_TESTING -I"$root/protocol" $(pkg-config --cflags msgpack))
	libs=($(pkg-config --libs msgpack) -lm) ;;
config)
	srcs=("$here/fuzz_config.c" "$root/daemon/config.c")
	flags=(-I"$root/daemon" -I"$root/update" $(pkg-config --cflags yaml-0.1))
	libs=($(pkg-config --libs yaml-0.1) -lm) ;;
wal)
	srcs=("$here/fuzz_wal.c" "$root/daemon/wal.c" "$root/update/crc32c.c")
	flags=(-I"$root/daemon" -I"$root/update")
	libs=(-lm) ;;
ckpt)
	srcs=("$here/fuzz_ckpt.c" "$root/daemon/ckpt.c" "$root/daemon/wal.c" "$root"/update/*.c)
	flags=(-I"$root/daemon" -I"$root/update" $(blas --cflags))
	libs=($(blas --libs) -lm) ;;
*)
	echo "run-fuzz.sh: unknown FUZZ_TARGET '$target' (request, config, wal, ckpt)" >&2
	exit 1 ;;
esac

bin=$out/fuzz_$target
"$CLANG" -std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-Wall -Wextra -Werror -Wno-unused-function \
	"${flags[@]}" "${srcs[@]}" "${libs[@]}" -o "$bin"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:detect_leaks=1:quarantine_size_mb=64
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1:print_stacktrace=1
export OPENBLAS_NUM_THREADS=1

echo "run-fuzz.sh: fuzzing '$target' for ${secs}s" >&2
rc=0
"$bin" "$out/corpus-$target" "$here/corpus/$target" \
	-max_total_time="$secs" -max_len=65536 -timeout=10 \
	-rss_limit_mb=1024 -malloc_limit_mb=64 \
	-error_exitcode=1 -timeout_exitcode=1 \
	-print_final_stats=1 -artifact_prefix="$out/" || rc=$?

if [[ $rc -ne 0 && "${FUZZ_KEEP:-1}" != 0 ]]; then
	mkdir -p "$here/regressions/$target"
	for f in "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*; do
		[[ -f "$f" ]] || continue
		cp "$f" "$here/regressions/$target/"
		echo "run-fuzz.sh: kept $(basename "$f") as tests/fuzz/regressions/$target/$(basename "$f");" \
		     "fix it and commit it (fuzz_replay_$target replays it)" >&2
	done
fi
if [[ $rc -ne 0 ]]; then
	echo "run-fuzz.sh: '$target' failed (fuzzer exit status $rc)" >&2
	exit 1
fi
exit 0
