#!/bin/sh
# Runs the libFuzzer targets on copies of their seed corpora; see README.md.
#   run.sh BUILD_DIR SECONDS TARGET...          fuzz each target SECONDS long
#   run.sh --repro BUILD_DIR 0 TARGET...        replay crashes/<target>/*
# Prints one summary line per target; exits 1 if any target crashed (or, with
# --repro, if any reproducer still crashes).  KEEP=1 keeps the scratch dir.
set -u
# the logs hold raw input bytes; sed must not choke on them in a UTF-8 locale
export LC_ALL=C
cd "$(dirname "$0")"

repro=0
if [ "${1:-}" = "--repro" ]; then
	repro=1
	shift
fi
build=$1
seconds=$2
shift 2

if [ "$repro" = 1 ]; then
	status=0
	for t in "$@"; do
		for f in crashes/$t/*; do
			[ -f "$f" ] || continue
			case "$f" in *.txt|*.md) continue ;; esac
			if "$build/$t" -runs=1 "$f" >/dev/null 2>&1; then
				echo "$t: $f: no longer crashes"
			else
				echo "$t: $f: still crashes"
				status=1
			fi
		done
	done
	exit $status
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pglite_sync_fuzz.XXXXXX")
status=0
summary=""
for t in "$@"; do
	case "$t" in
		fuzz_bodysplit) maxlen=16384 ;;
		fuzz_message) maxlen=8192 ;;
		*) maxlen=4096 ;;
	esac
	mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
	cp corpus/$t/* "$work/$t/corpus/"
	echo "# $t: fuzzing for $seconds s (log: $work/$t/log)"
	"$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
		-max_len="$maxlen" -print_final_stats=1 \
		-artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" >"$work/$t/log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log" | tail -1)
	secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t/log" | tail -1)
	last=$(grep -E '^#[0-9]+' "$work/$t/log" | tail -1)
	cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
	artifact=$(ls "$work/$t/artifacts/" 2>/dev/null | head -1)
	if [ $rc -ne 0 ] || [ -n "$artifact" ]; then
		result="CRASHED: $work/$t/artifacts/$artifact"
		grep -m1 -E 'ERROR: |INVARIANT VIOLATED|runtime error' "$work/$t/log" | sed 's/^/#   /'
		status=1
	else
		result="ok"
	fi
	line=$(printf '%-15s %10s execs %8s exec/s  cov %5s  ft %6s  corpus %5s  %s' \
		"$t" "${execs:-?}" "${secs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")
	echo "$line"
	summary="$summary$line
"
done
echo "# summary ($seconds s per target)"
printf '%s' "$summary"
if [ $status -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
	rm -rf "$work"
else
	echo "# scratch directory kept: $work"
fi
exit $status
