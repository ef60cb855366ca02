#!/usr/bin/env bash
# compare.sh measures two builds of Agora side by side on the warm replay:
# it builds Agora at revision OLD and from the working tree (or at NEW),
# fills one storage directory through the new build from a file:// GOPROXY
# tree of the listed files, and then, ROUNDS times, starts each build on
# that storage, and bench/cmd/gostatic, and replays the list against each
# for DURATION, the order rotating every round. It prints every run and the
# medians of req/s and of the server's CPU time per request. On a shared,
# noisy machine this is how to tell whether a change made serving faster:
# two builds alternating in one script, many rounds, medians.
#
# Usage: bench/compare.sh OLD [NEW]     e.g. bench/compare.sh HEAD~1
#
# Settings (environment): ROUNDS=7, DURATION=8s, WARMUP=3s, CLIENTS=16,
# LIST=bench/replay/requests.txt, KEEP=1 keeps the temporary directory.
# It needs the module cache of this checkout, as replay.sh does
# (go mod download all).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$BENCH")
OUT=$BENCH/out
HOST=127.0.0.1
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

OLD=${1:-}
NEW=${2:-}
[[ -n $OLD && $# -le 2 ]] || die "usage: bench/compare.sh OLD [NEW]: two revisions (NEW: the working tree)"
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-3s}
CLIENTS=${CLIENTS:-16}
LIST=${LIST:-$BENCH/replay/requests.txt}
KEEP=${KEEP:-0}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive number"

arm_cleanup
require go curl git
WORK=$(mktemp -d "${TMPDIR:-/tmp}/agora-compare.XXXXXX")
SERVER_PID=""
# cleanup_extra, called by cleanup, stops the server and removes a
# worktree that a failed build left.
cleanup_extra() {
	stop_pid "$SERVER_PID"
	local tree
	for tree in "$WORK"/src-*; do
		[[ -d $tree ]] && git -C "$REPO" worktree remove --force "$tree"
	done
	return 0
}

# build_at builds agora at revision $1 (empty: the working tree) into $2.
build_at() {
	if [[ -z $1 ]]; then
		(cd "$REPO" && CGO_ENABLED=0 go build -o "$2" .)
		return
	fi
	local tree=$WORK/src-${2##*/}
	git -C "$REPO" worktree add -q --detach "$tree" "$1" || die "$1: not a revision of $REPO"
	(cd "$tree" && CGO_ENABLED=0 go build -o "$2" .)
	git -C "$REPO" worktree remove --force "$tree"
}

mkdir -p "$OUT"
OLD_DESC=$(git -C "$REPO" rev-parse --short "$OLD")
NEW_DESC=${NEW:+$(git -C "$REPO" rev-parse --short "$NEW")}
NEW_DESC=${NEW_DESC:-"working tree ($(git -C "$REPO" rev-parse --short HEAD)$([[ -z $(git -C "$REPO" status --porcelain) ]] || echo ', with changes'))"}
log "building agora at $OLD_DESC and $NEW_DESC, replay and gostatic"
build_at "$OLD" "$WORK/agora-old"
build_at "$NEW" "$WORK/agora-new"
(cd "$REPO" && go build -o "$OUT/replay" ./bench/cmd/replay && go build -o "$OUT/gostatic" ./bench/cmd/gostatic)

# The listed .info, .mod and .zip files (not @v/list, which Agora merges
# with the upstream's) as a GOPROXY tree, linked from the module cache.
MODCACHE=$(cd "$REPO" && go env GOMODCACHE)/cache/download
TREE=$WORK/upstream
WARM_LIST=$WORK/requests.txt
grep -E '\.(info|mod|zip)$' "$LIST" >"$WARM_LIST" || die "$LIST lists no files"
while read -r p; do
	[[ -f $MODCACHE$p ]] || die "not in the module cache: $MODCACHE$p: run 'go mod download all' in $REPO first"
	mkdir -p "$TREE${p%/*}"
	ln "$MODCACHE$p" "$TREE$p" 2>/dev/null || cp "$MODCACHE$p" "$TREE$p"
done <"$WARM_LIST"

DATA=$WORK/data
PORT=$(free_port)
URL=http://$HOST:$PORT

# start_server starts server $1 (old, new: Agora on $DATA; gostatic) on
# $PORT with fetching from $2 (default off), into SERVER_PID.
start_server() {
	case $1 in
	gostatic) "$OUT/gostatic" -root "$DATA/storage" -listen "$HOST:$PORT" >>"$WORK/gostatic.log" 2>&1 & ;;
	*)
		(cd "$WORK" && exec env GO_ENV=production SESSION_SECRET=compare-compare-compare-compare-compare \
			AGORA_DATA_DIR="$DATA" AGORA_READ_AUTH=public AGORA_UPSTREAM="${2:-off}" AGORA_SUMDB=off \
			ADDR="$HOST:$PORT" "$WORK/agora-$1" 2>>"$WORK/agora-$1.log" >/dev/null) &
		;;
	esac
	SERVER_PID=$!
	local probe=/healthz
	[[ $1 != gostatic ]] || probe=$(head -n 1 "$WARM_LIST")
	started "$URL$probe" "$SERVER_PID" || die "$1 did not start: its port was taken?"
}

log "filling $DATA through the new build from file://$TREE"
start_server new "file://$TREE"
"$OUT/replay" -list "$WARM_LIST" -url "$URL" -mode once >/dev/null || die "the fill failed"
stop_pid "$SERVER_PID"
SERVER_PID=""

# field prints the value of key $1 in the RESULT line $2.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

RUNS=$WORK/runs.txt
servers=(old new gostatic)
for r in $(seq "$ROUNDS"); do
	for i in 0 1 2; do
		s=${servers[$(((i + r) % 3))]}
		start_server "$s"
		"$OUT/replay" -list "$WARM_LIST" -url "$URL" -c "$CLIENTS" -mode loop -duration "$WARMUP" >/dev/null
		t0=$(cpu_ticks "$SERVER_PID")
		res=$("$OUT/replay" -list "$WARM_LIST" -url "$URL" -c "$CLIENTS" -mode loop -duration "$DURATION")
		t1=$(cpu_ticks "$SERVER_PID")
		stop_pid "$SERVER_PID"
		SERVER_PID=""
		[[ $(field errors "$res") == 0 ]] || die "$s answered with errors: $res"
		n=$(field requests "$res")
		cpu=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
		printf '%s %s %s\n' "$s" "$(field rps "$res")" "$cpu" >>"$RUNS"
		log "round $r/$ROUNDS $(printf '%-8s' "$s") $(field rps "$res") req/s, $cpu µs of CPU per request"
	done
done

med() { awk -v s="$1" -v c="$2" '$1 == s { print $c }' "$RUNS" | median; }
printf '\nwarm replay of %s files, %s clients, %s rounds of %s per server; medians\n' "$(wc -l <"$WARM_LIST")" "$CLIENTS" "$ROUNDS" "$DURATION"
printf '  %-44s %10s %12s\n' server req/s "CPU µs/req"
for s in "${servers[@]}"; do
	case $s in
	old) d="agora $OLD_DESC" ;;
	new) d="agora $NEW_DESC" ;;
	gostatic) d="gostatic (net/http alone)" ;;
	esac
	printf '  %-44s %10s %12s\n' "$d" "$(med "$s" 2)" "$(med "$s" 3)"
done
awk -v o="$(med old 2)" -v n="$(med new 2)" -v g="$(med gostatic 2)" \
	'BEGIN { printf "  req/s new/old %.3f, new/gostatic %.3f, old/gostatic %.3f\n", n / o, n / g, o / g }'
