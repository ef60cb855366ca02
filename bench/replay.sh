#!/usr/bin/env bash
# replay.sh measures Agora as a pull-through cache: it replays the GOPROXY
# requests of a real module graph (Agora's own, bench/replay/requests.txt)
# with concurrent keep-alive clients, first straight from an upstream proxy
# (nginx serving the files), then through a fresh Agora that fills itself
# from that upstream (cold), then against the filled Agora next to nginx
# serving Agora's storage directory and bench/cmd/gostatic, Go's net/http
# serving it as Agora does (warm); and it measures cached @v/list
# and @latest with wrk.
#
# Everything runs on 127.0.0.1 and stops by itself; every process the script
# starts is stopped on exit, also on failure or Ctrl-C. See bench/README.md.
#
# Usage: bench/replay.sh
#
# Settings (environment):
#   CLIENTS=16        concurrent keep-alive clients of the replay
#   COLD_ROUNDS=3     cold fills (each into a fresh Agora), each after a
#                     replay straight from the upstream; medians reported
#   ROUNDS=3          warm replay runs per server (median reported)
#   DURATION=10s      length of one warm replay run
#   WARMUP=3s         length of the unmeasured warm run per server
#   WRK_CONNS=64      wrk connections for @v/list and @latest
#   WRK_THREADS=2     wrk threads
#   WRK_ROUNDS=3      wrk runs per URL (median reported)
#   WRK_DURATION=10s  length of one wrk run
#   GO_ROUNDS=3       runs of the go command (go list -deps -test ./... in
#                     a fresh module cache) straight from the upstream and
#                     through a fresh Agora, each; 0 skips them
#   UPSTREAM_RTT=0    round-trip time to the upstream (such as 20ms), which
#                     bench/cmd/wan adds between nginx and its clients, the
#                     direct ones and Agora, with two more round trips for
#                     each new connection (TCP and TLS handshakes); 0: the
#                     upstream is on loopback
#   UPSTREAM_RATE=0   with UPSTREAM_RTT: the link's bytes per second each
#                     way, all connections together; 0: no limit
#   DATABASE=sqlite   Agora's database: sqlite (a file in its data
#                     directory), or postgres: a database agora_replay,
#                     dropped and created for each Agora, on the server at
#                     PG_URL (default postgres://postgres@127.0.0.1:5432)
#   SUMDB=off         on: a checksum database of the listed versions
#                     (bench/cmd/sumdb) behind the upstream's /sumdb/, so
#                     that Agora verifies every version it fetches, as it
#                     does against sum.golang.org in production; off:
#                     AGORA_SUMDB=off
#   WARM=on           off: skip the warm replay and wrk (steps 6-7), e.g.
#                     to compare cold fills at several UPSTREAM_RTT
#   LOGS=on           on: Agora's request log and the storage nginx's
#                     access_log, to files; off: AGORA_LOG_LEVEL=warn and
#                     access_log off (the upstream nginx always logs, to
#                     count Agora's fetches)
#   LIST=bench/replay/requests.txt  the request paths (bench/replay/gen.sh)
#   KEEP=0            1: keep the temporary directory (data, logs)
#
# Output: progress on stderr; the summary on stdout and in
# bench/out/replay-results.txt.
set -euo pipefail

CLIENTS=${CLIENTS:-16}
COLD_ROUNDS=${COLD_ROUNDS:-3}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
WRK_CONNS=${WRK_CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
WRK_ROUNDS=${WRK_ROUNDS:-3}
WRK_DURATION=${WRK_DURATION:-10s}
GO_ROUNDS=${GO_ROUNDS:-3}
UPSTREAM_RTT=${UPSTREAM_RTT:-0}
UPSTREAM_RATE=${UPSTREAM_RATE:-0}
WARM=${WARM:-on}
SUMDB=${SUMDB:-off}
DATABASE=${DATABASE:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
LOGS=${LOGS:-on}
KEEP=${KEEP:-0}

# Targets.
TARGET_COLD_RATIO=2       # cold fill time / time straight from the upstream, at most
TARGET_WARM_RATIO=0.95    # warm replay req/s, agora/nginx, at least
TARGET_WARM_RSS_MIB=40    # agora's peak RSS during the warm replay, at most
TARGET_LIST_RPS=15000     # cached @v/list and @latest req/s, each, at least

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
OUT=$BENCH/out
HOST=127.0.0.1
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
LIST=${LIST:-$BENCH/replay/requests.txt}

case $LOGS in on | off) ;; *) die "LOGS=$LOGS: want on or off" ;; esac
case $WARM in on | off) ;; *) die "WARM=$WARM: want on or off" ;; esac
case $SUMDB in on | off) ;; *) die "SUMDB=$SUMDB: want on or off" ;; esac
case $DATABASE in sqlite | postgres) ;; *) die "DATABASE=$DATABASE: want sqlite or postgres" ;; esac
[[ $UPSTREAM_RTT == 0 || $UPSTREAM_RTT =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] || die "UPSTREAM_RTT=$UPSTREAM_RTT: want 0 or a duration such as 20ms"
[[ $UPSTREAM_RATE =~ ^[0-9]+$ ]] || die "UPSTREAM_RATE=$UPSTREAM_RATE: want bytes per second"
for v in CLIENTS COLD_ROUNDS ROUNDS WRK_CONNS WRK_THREADS WRK_ROUNDS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive number"
done
[[ $GO_ROUNDS =~ ^[0-9]+$ ]] || die "GO_ROUNDS=$GO_ROUNDS: want a number"
[[ -s $LIST ]] || die "$LIST: no request list (bench/replay/gen.sh writes it)"
LIST=$(cd "$(dirname "$LIST")" && pwd)/$(basename "$LIST")

# --- processes and clean-up ---------------------------------------------------

arm_cleanup

# --- tools ----------------------------------------------------------------------

install_missing nginx wrk
require go curl
[[ $DATABASE == sqlite ]] || require psql

# --- the upstream's files -------------------------------------------------------

MODCACHE=$(cd "$REPO" && go env GOMODCACHE)/cache/download
NREQ=$(grep -c '^/' "$LIST")
missing=0
while read -r p; do
	[[ $p == /* ]] || continue
	if [[ ! -f $MODCACHE$p ]]; then
		((missing < 5)) && printf 'replay.sh: not in the module cache: %s%s\n' "$MODCACHE" "$p" >&2
		missing=$((missing + 1))
	fi
done <"$LIST"
((missing == 0)) || die "$missing of the $NREQ files of $LIST are not in $MODCACHE: run 'go mod download all' in $REPO first"

mkdir -p "$OUT"
log "building agora, replay, wan, sumdb and gostatic into $OUT"
# Agora as deployed (make build): static, without cgo.
(cd "$REPO" && CGO_ENABLED=0 go build -o "$OUT/agora" . && go build -o "$OUT/replay" ./bench/cmd/replay && go build -o "$OUT/wan" ./bench/cmd/wan && go build -o "$OUT/sumdb" ./bench/cmd/sumdb && go build -o "$OUT/gostatic" ./bench/cmd/gostatic)
AGORA=$OUT/agora
REPLAY=$OUT/replay

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agora-replay.XXXXXX")
TREE=$WORK/upstream
DATA=$WORK/data
STORAGE=$DATA/storage
mkdir -p "$TREE" "$WORK/nginx" "$DATA"

# The upstream serves only the listed files: hard links into the module
# cache when it is on the same file system, copies otherwise.
log "linking the $NREQ listed files of $MODCACHE into $TREE"
while read -r p; do
	[[ $p == /* ]] || continue
	mkdir -p "$TREE${p%/*}"
	ln "$MODCACHE$p" "$TREE$p" 2>/dev/null || cp "$MODCACHE$p" "$TREE$p"
done <"$LIST"
TREE_BYTES=$(find "$TREE" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')

# count prints how many lines of stdin (or files $2...) match pattern $1.
count() { grep -c "$@" || true; }

# --- the checksum database (SUMDB=on) -------------------------------------------

# It hashes the tree and fills its Merkle tree before it writes its key, so
# it costs no CPU time during the measured runs but what serving takes.
SUMDB_NAME=sum.bench.invalid
SUMDB_LOCATION=""
SUMDB_PID=""
PG_DB=agora_replay
# cleanup_extra, called by cleanup, stops the checksum database and drops
# the benchmark's database.
cleanup_extra() {
	stop_pid "${SUMDB_PID:-}"
	stop_pid "${GOSTATIC_PID:-}"
	[[ $DATABASE == postgres ]] && pg_admin "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" 2>/dev/null
	return 0
}
if [[ $SUMDB == on ]]; then
	log "starting bench/cmd/sumdb: a checksum database of the listed versions"
	for attempt in 1 2 3 4; do
		((attempt < 4)) || die "sumdb did not start: $(cat "$WORK/sumdb.log")"
		SUMDB_PORT=$(free_port)
		rm -f "$WORK/sumdb.key"
		"$OUT/sumdb" -tree "$TREE" -listen "$HOST:$SUMDB_PORT" -name "$SUMDB_NAME" -key "$WORK/sumdb.key" >"$WORK/sumdb.log" 2>&1 &
		SUMDB_PID=$!
		for _ in $(seq 1 600); do
			[[ -s $WORK/sumdb.key ]] && break
			kill -0 "$SUMDB_PID" 2>/dev/null || break
			sleep 0.1
		done
		[[ -s $WORK/sumdb.key ]] && curl -fsS -o /dev/null "http://$HOST:$SUMDB_PORT/sumdb/$SUMDB_NAME/supported" && break
		stop_pid "$SUMDB_PID"
		SUMDB_PID=""
	done
	# The upstream passes /sumdb/ on to it, as proxy.golang.org does for
	# sum.golang.org; Agora reaches it there, through the emulated link.
	SUMDB_LOCATION="location /sumdb/ { proxy_pass http://$HOST:$SUMDB_PORT; }"
fi

# --- nginx: the upstream, and Agora's storage -----------------------------------

if [[ $LOGS == on ]]; then
	STORAGE_ACCESS_LOG="access_log $WORK/nginx/storage-access.log combined;"
else
	STORAGE_ACCESS_LOG="access_log off;"
fi
# write_nginx_conf writes the configuration of one nginx with two servers:
# on port $1 the upstream (root: the linked files, a GOPROXY file tree), on
# port $2 Agora's storage directory (as in serve.sh). The upstream's access
# log counts what Agora fetches.
write_nginx_conf() {
	local upstream
	upstream=$(
		cat <<EOF
	server {
		listen $HOST:$1;
		root $TREE;
		access_log $WORK/nginx/upstream-access.log fetch;
		$SUMDB_LOCATION
	}
EOF
	)
	nginx_conf auto "log_format fetch '\$uri \$status \$body_bytes_sent';" "$upstream
$(storage_server "$2" "$STORAGE_ACCESS_LOG")"
}
FIRST=$(grep -m1 '^/' "$LIST")
for attempt in 1 2 3 4; do
	((attempt < 4)) || die "nginx did not start"
	UP_PORT=$(free_port)
	ST_PORT=$(free_port)
	[[ $UP_PORT != "$ST_PORT" ]] || continue
	UPSTREAM_URL=http://$HOST:$UP_PORT
	NGINX_URL=http://$HOST:$ST_PORT
	write_nginx_conf "$UP_PORT" "$ST_PORT"
	log "starting nginx: the upstream on $UPSTREAM_URL, agora's storage on $NGINX_URL"
	nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
	NGINX_PID=$!
	started "$UPSTREAM_URL$FIRST" "$NGINX_PID" && break
	NGINX_PID=""
done
NGINX_PIDS="$NGINX_PID $(pgrep -P "$NGINX_PID" | paste -sd ' ')"

# With UPSTREAM_RTT, the upstream is what its clients reach through the
# emulated link; LOCAL_UPSTREAM_URL, nginx itself, serves what is not
# measured (the page-cache read, the reference bodies).
LOCAL_UPSTREAM_URL=$UPSTREAM_URL
LINK="loopback"
if [[ $UPSTREAM_RTT != 0 ]]; then
	for attempt in 1 2 3 4; do
		((attempt < 4)) || die "wan did not start: $(cat "$WORK/wan.log")"
		WAN_PORT=$(free_port)
		"$OUT/wan" -listen "$HOST:$WAN_PORT" -to "$HOST:$UP_PORT" -rtt "$UPSTREAM_RTT" -rate "$UPSTREAM_RATE" >"$WORK/wan.log" 2>&1 &
		WAN_PID=$!
		started "http://$HOST:$WAN_PORT$FIRST" "$WAN_PID" && break
		WAN_PID=""
	done
	UPSTREAM_URL=http://$HOST:$WAN_PORT
	LINK="bench/cmd/wan: round trip $UPSTREAM_RTT, 2 more per new connection"
	((UPSTREAM_RATE == 0)) || LINK+=", $UPSTREAM_RATE B/s each way"
	log "the upstream through $LINK: $UPSTREAM_URL"
fi

# --- agora ----------------------------------------------------------------------

# Agora runs in the work directory, so that no .env file of the checkout
# applies, with every setting spelled out. Checksum verification is off
# unless SUMDB=on started a database to verify against.
AGORA_SUMDB=off
[[ $SUMDB == off ]] || AGORA_SUMDB=$(<"$WORK/sumdb.key")
agora_env=(
	GO_ENV=production
	SESSION_SECRET="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
	AGORA_DATA_DIR="$DATA"
	AGORA_STORAGE_DIR="$STORAGE"
	AGORA_READ_AUTH=public
	AGORA_UPSTREAM="$UPSTREAM_URL"
	AGORA_SUMDB="$AGORA_SUMDB"
)
if [[ $DATABASE == postgres ]]; then
	agora_env+=(DATABASE_URL="$PG_URL/$PG_DB?sslmode=disable")
	DB_DESC="PostgreSQL $(psql "$PG_URL/postgres?sslmode=disable" -tAc 'SHOW server_version' | awk '{ print $1 }') at $PG_URL, database $PG_DB"
else
	agora_env+=(DATABASE_URL="sqlite3://$DATA/agora.db")
	DB_DESC=SQLite
fi
# pg_admin runs SQL $1 on the PostgreSQL server's postgres database.
pg_admin() { psql "$PG_URL/postgres?sslmode=disable" -q -v ON_ERROR_STOP=1 -c "$1" >/dev/null; }
# With LOGS=off, Agora logs no requests (AGORA_LOG_LEVEL=warn), only what
# goes wrong, still to the file.
AGORA_LOG=$WORK/agora.log
[[ $LOGS == on ]] || agora_env+=(AGORA_LOG_LEVEL=warn)

# start_agora starts a fresh Agora: an empty data directory, a new database.
start_agora() {
	stop_pid "$AGORA_PID"
	AGORA_PID=""
	rm -rf "$DATA"
	mkdir -p "$DATA"
	if [[ $DATABASE == postgres ]]; then
		pg_admin "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" || die "cannot drop database $PG_DB at $PG_URL"
		pg_admin "CREATE DATABASE $PG_DB" || die "cannot create database $PG_DB at $PG_URL"
	fi
	for attempt in 1 2 3 4; do
		((attempt < 4)) || die "agora did not start"
		AGORA_PORT=$(free_port)
		AGORA_URL=http://$HOST:$AGORA_PORT
		(cd "$WORK" && exec env "${agora_env[@]}" ADDR="$HOST:$AGORA_PORT" "$AGORA" 2>>"$AGORA_LOG" >/dev/null) &
		AGORA_PID=$!
		started "$AGORA_URL/healthz" "$AGORA_PID" && return 0
		AGORA_PID=""
	done
}

# --- replay ---------------------------------------------------------------------

# machine_ticks prints, for the whole machine and in clock ticks: busy CPU
# time, time stolen by the hypervisor, all time.
machine_ticks() {
	local a
	read -r -a a </proc/stat
	echo "$((a[1] + a[2] + a[3] + a[6] + a[7])) $((a[8])) $((a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7] + a[8]))"
}

# child_ticks sets the variable named $1 to the CPU time, in clock ticks,
# of the finished children of the calling shell (it must not run in a
# subshell of its own, as $(...) would).
child_ticks() {
	local b
	read -r -a b <"/proc/$BASHPID/stat"
	printf -v "$1" '%d' $((b[15] + b[16]))
}

# replay runs the replay tool (in the background, so that cleanup can stop
# it) with the arguments given and prints its RESULT line without the word
# RESULT, followed by cpu_us=N, the CPU time per request of the processes
# $SERVER_PIDS over the run, busy_pct=N, how busy the machine's CPUs were
# (all processes), other_pct=N, the share of the machine's time that went
# to neither the servers nor the client (other processes, kernel threads),
# and steal_pct=N, the share the hypervisor took. Its errors go to
# $WORK/replay.err.
SERVER_PIDS=""
replay() {
	local t0 t1 s0 s1 c0 c1 m0 m1 line
	read -r -a m0 < <(machine_ticks)
	t0=$(cpu_ticks "$SERVER_PIDS")
	s0=$(cpu_ticks "$NGINX_PIDS $AGORA_PID ${GOSTATIC_PID:-}")
	child_ticks c0
	"$REPLAY" -c "$CLIENTS" "$@" >"$WORK/replay.out" 2>"$WORK/replay.err" &
	echo $! >"$WORK/client.pid"
	wait $! || die "replay $*: $(cat "$WORK/replay.err")"
	rm "$WORK/client.pid"
	t1=$(cpu_ticks "$SERVER_PIDS")
	s1=$(cpu_ticks "$NGINX_PIDS $AGORA_PID ${GOSTATIC_PID:-}")
	child_ticks c1
	read -r -a m1 < <(machine_ticks)
	line=$(grep '^RESULT ' "$WORK/replay.out") || die "replay $* printed no RESULT line: $(cat "$WORK/replay.out" "$WORK/replay.err")"
	awk -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" -v busy=$((m1[0] - m0[0])) -v steal=$((m1[1] - m0[1])) -v all=$((m1[2] - m0[2])) \
		-v mine=$((s1 - s0 + c1 - c0)) '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
		$1 = ""
		o = all ? (busy - mine) / all * 100 : 0
		printf "%s cpu_us=%.1f busy_pct=%.0f other_pct=%.0f steal_pct=%.0f\n", substr($0, 2),
			r["requests"] ? ticks / hz * 1e6 / r["requests"] : 0, all ? busy / all * 100 : 0, o < 0 ? 0 : o, all ? steal / all * 100 : 0
	}' <<<"$line"
}

# field prints the value of key $1 in a line of key=value pairs $2.
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

# stored_report counts what Agora's storage holds and compares it with what
# the list asked for; it prints: info mod zip mod_only expected_mod_only
# extra_zips missing_zips, and the unexpected zips in $WORK/extra-zips.
stored_report() {
	local files=$WORK/stored.txt
	(cd "$STORAGE" && find . -type f ! -name '.*' -printf '/%P\n' | sort) >"$files"
	{ grep '\.zip$' "$LIST" || true; } | sort -u >"$WORK/asked-zips.txt"
	grep '\.zip$' "$files" >"$WORK/stored-zips.txt" || true
	comm -13 "$WORK/asked-zips.txt" "$WORK/stored-zips.txt" >"$WORK/extra-zips"
	awk -v asked="$WORK/asked-zips.txt" -v list="$LIST" '
		function ver(p) { sub(/\.(info|mod|zip)$/, "", p); return p }
		BEGIN {
			while ((getline p < list) > 0) if (p ~ /\.(info|mod)$/) want[ver(p)] = 1
			while ((getline p < asked) > 0) { zipped[ver(p)] = 1; nasked++ }
			for (v in want) if (!(v in zipped)) expected++
		}
		/\.info$/ { info++ }
		/\.mod$/ { mod++; mods[ver($0)] = 1 }
		/\.zip$/ { zip++; zips[ver($0)] = 1; if (ver($0) in zipped) found++ }
		END {
			for (v in mods) if (!(v in zips)) modonly++
			printf "%d %d %d %d %d %d %d\n", info, mod, zip, modonly, expected, zip - found, nasked - found
		}' "$files"
}

# fetch_counts prints what the upstream served since line $1 of its access
# log: requests by kind (info mod zip list sumdb other).
fetch_counts() {
	tail -n +"$1" "$WORK/nginx/upstream-access.log" | awk '
		{ n++ }
		$1 ~ /\.info$/ { info++; next }
		$1 ~ /\.mod$/ { mod++; next }
		$1 ~ /\.zip$/ { zip++; next }
		$1 ~ /\/@v\/list$/ { list++; next }
		$1 ~ /^\/sumdb\// { sumdb++; next }
		{ other++ }
		END { printf "%d %d %d %d %d %d\n", info, mod, zip, list, sumdb, other }'
}
upstream_log_lines() { wc -l <"$WORK/nginx/upstream-access.log" 2>/dev/null || echo 0; }

# --- 1 and 2: straight from the upstream, and a cold fill through agora ---------

log "reading every listed file once, so that all runs are from the page cache"
SERVER_PIDS=$NGINX_PIDS
replay -list "$LIST" -url "$LOCAL_UPSTREAM_URL" -mode once >/dev/null

RUNS=$WORK/runs.txt # phase server round key=value...
: >"$RUNS"
STORE_FAILS=0
for r in $(seq "$COLD_ROUNDS"); do
	SERVER_PIDS=$NGINX_PIDS
	res=$(replay -list "$LIST" -url "$UPSTREAM_URL" -mode once -kinds)
	echo "cold direct $r $res" >>"$RUNS"
	cp "$WORK/replay.out" "$WORK/cold-direct-$r.out"
	log "$(printf 'round %d/%d straight from the upstream: %s' "$r" "$COLD_ROUNDS" "$res")"

	start_agora
	SERVER_PIDS=$AGORA_PID
	from=$(($(upstream_log_lines) + 1))
	# -ref: every body must equal the upstream's (fetched before the timed run).
	res=$(replay -list "$LIST" -url "$AGORA_URL" -mode once -ref "$LOCAL_UPSTREAM_URL" -verify full -kinds)
	echo "cold agora $r $res" >>"$RUNS"
	cp "$WORK/replay.out" "$WORK/cold-agora-$r.out"
	cp "$WORK/replay.err" "$WORK/cold-$r.err"
	log "$(printf 'round %d/%d cold fill through agora:       %s' "$r" "$COLD_ROUNDS" "$res")"
	sleep 0.5 # let the access log reach the disk
	read -r F_INFO F_MOD F_ZIP F_LIST F_SUMDB F_OTHER < <(fetch_counts "$from")
	# Subtract the reference fetch: one request per distinct listed path.
	read -r S_INFO S_MOD S_ZIP S_MODONLY S_EXPECTED S_EXTRA S_MISSING < <(stored_report)
	if ((S_EXTRA > 0 || S_MISSING > 0)); then
		STORE_FAILS=$((STORE_FAILS + 1))
		log "round $r: $S_EXTRA zips stored that were not asked for, $S_MISSING asked for but not stored: $(head -n 5 "$WORK/extra-zips" | paste -sd ' ')"
	fi
	log "round $r: stored $S_INFO .info, $S_MOD .mod, $S_ZIP .zip; $S_MODONLY versions with a .mod and no .zip ($S_EXPECTED expected)"
done
# What validating and hashing the zips costs on this machine, which any
# cache that verifies what it fetches adds to the upstream's time.
"$REPLAY" -list "$LIST" -hashdir "$TREE" -c "$CLIENTS" >"$WORK/hash.out" 2>"$WORK/hash.err" ||
	die "replay -hashdir: $(cat "$WORK/hash.err")"
HASH=$(grep '^HASH ' "$WORK/hash.out")
HASH_S=$(field seconds "$HASH")
log "CheckZip and h1: hash of the listed zips ($CLIENTS goroutines): $HASH_S s"

# The upstream's log also holds the reference fetches of the replay tool:
# as many requests as distinct listed paths, per cold round.
DISTINCT=$(grep '^/' "$LIST" | sort -u)
D_INFO=$(count '\.info$' <<<"$DISTINCT")
D_MOD=$(count '\.mod$' <<<"$DISTINCT")
D_ZIP=$(count '\.zip$' <<<"$DISTINCT")
D_LIST=$(count '/@v/list$' <<<"$DISTINCT")
METRICS_SCRAPE=$WORK/metrics.txt
curl -s -o "$METRICS_SCRAPE" "$AGORA_URL/metrics" || true

# --- 3: warm replay, agora next to nginx and gostatic on agora's storage ---------
if [[ $WARM == on ]]; then
	# The warm list: the listed .info, .mod and .zip paths that are files in
	# Agora's storage, so that nginx serves the same bytes. Not @v/list: Agora
	# answers it with the upstream's versions too, its storage's list file
	# holds only the versions stored.
	WARM_LIST=$WORK/warm-requests.txt
	while read -r p; do
		[[ $p == /*.info || $p == /*.mod || $p == /*.zip ]] && [[ -f $STORAGE$p ]] && echo "$p"
	done <"$LIST" >"$WARM_LIST"
	NWARM=$(wc -l <"$WARM_LIST")
	((NWARM > 0)) || die "agora's storage holds none of the listed files"

	# gostatic: Go's net/http serving the same storage as Agora does, with
	# none of Agora's work; the reference that splits the distance to nginx.
	for attempt in 1 2 3 4; do
		((attempt < 4)) || die "gostatic did not start: $(cat "$WORK/gostatic.log")"
		GOSTATIC_URL=http://$HOST:$(free_port)
		"$OUT/gostatic" -root "$STORAGE" -listen "${GOSTATIC_URL#http://}" >"$WORK/gostatic.log" 2>&1 &
		GOSTATIC_PID=$!
		started "$GOSTATIC_URL$(head -n 1 "$WARM_LIST")" "$GOSTATIC_PID" && break
		GOSTATIC_PID=""
	done

	log "checking that agora, gostatic and nginx on agora's storage return the same bytes ($NWARM paths)"
	SERVER_PIDS="$AGORA_PID"
	res=$(replay -list "$WARM_LIST" -url "$AGORA_URL" -mode once -ref "$NGINX_URL" -verify full)
	[[ $(field errors "$res") == 0 ]] || die "agora's answers differ from its storage's files: $(cat "$WORK/replay.err")"
	SERVER_PIDS="$GOSTATIC_PID"
	res=$(replay -list "$WARM_LIST" -url "$GOSTATIC_URL" -mode once -ref "$NGINX_URL" -verify full)
	[[ $(field errors "$res") == 0 ]] || die "gostatic's answers differ from agora's storage's files: $(cat "$WORK/replay.err")"

	log "warming up: $WARMUP of replay per server"
	SERVER_PIDS=$NGINX_PIDS
	replay -list "$WARM_LIST" -url "$NGINX_URL" -mode loop -duration "$WARMUP" >/dev/null
	SERVER_PIDS=$AGORA_PID
	replay -list "$WARM_LIST" -url "$AGORA_URL" -mode loop -duration "$WARMUP" >/dev/null
	SERVER_PIDS=$GOSTATIC_PID
	replay -list "$WARM_LIST" -url "$GOSTATIC_URL" -mode loop -duration "$WARMUP" >/dev/null

	sleep 2
	IDLE_KIB=$(vm_kib "$AGORA_PID" VmRSS)
	rss_watch "$AGORA_PID" "$WORK/rss-samples.txt"
	for r in $(seq "$ROUNDS"); do
		# Reverse the order every other round, so that drift falls on all
		# alike.
		order=(nginx agora gostatic)
		((r % 2 == 0)) && order=(gostatic agora nginx)
		for s in "${order[@]}"; do
			case $s in
			agora) SERVER_PIDS=$AGORA_PID url=$AGORA_URL ;;
			gostatic) SERVER_PIDS=$GOSTATIC_PID url=$GOSTATIC_URL ;;
			*) SERVER_PIDS=$NGINX_PIDS url=$NGINX_URL ;;
			esac
			res=$(replay -list "$WARM_LIST" -url "$url" -mode loop -duration "$DURATION")
			echo "warm $s $r $res" >>"$RUNS"
			log "$(printf 'warm round %d/%d %-8s %s' "$r" "$ROUNDS" "$s" "$res")"
		done
	done
	rss_peak "$AGORA_PID"
	stop_pid "$GOSTATIC_PID"
	GOSTATIC_PID=""

	# --- 4: cached @v/list and @latest with wrk ---------------------------------

	# The module: the first direct requirement whose list was replayed.
	LIST_PATH=$(grep -m1 '/@v/list$' "$LIST" || true)
	[[ -n $LIST_PATH ]] || die "$LIST has no @v/list request"
	MOD_ESC=${LIST_PATH%/@v/list}
	declare -A WRK_PATH=([list]=$LIST_PATH [latest]=$MOD_ESC/@latest)
	for k in list latest; do
		code=$(curl -sS -o "$WORK/body-$k" -w '%{http_code}' "$AGORA_URL${WRK_PATH[$k]}")
		[[ $code == 200 ]] || die "GET ${WRK_PATH[$k]}: HTTP $code: $(head -c 300 "$WORK/body-$k")"
	done

	# run_wrk runs wrk for duration $2 against Agora's URL for $1 (list or
	# latest) and prints: req/s errors p50_ms p99_ms cpu_us_per_request.
	run_wrk() {
		local out line t0 t1
		t0=$(cpu_ticks "$AGORA_PID")
		wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$2" -s "$BENCH/report.lua" "$AGORA_URL${WRK_PATH[$1]}" >"$WORK/wrk.out" 2>&1 &
		echo $! >"$WORK/client.pid"
		wait $! || die "wrk failed: $(cat "$WORK/wrk.out")"
		rm "$WORK/client.pid"
		t1=$(cpu_ticks "$AGORA_PID")
		out=$(<"$WORK/wrk.out")
		line=$(grep '^RESULT ' <<<"$out") || die "wrk printed no RESULT line: $out"
		awk -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" '{
			for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
			printf "%.1f %d %.3f %.3f %.1f\n", r["requests"] / (r["duration_us"] / 1e6),
				r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"],
				r["p50_us"] / 1000, r["p99_us"] / 1000, ticks / hz * 1e6 / r["requests"]
		}' <<<"$line"
	}
	WRK_RUNS=$WORK/wrk-runs.txt # kind round rps errors p50 p99 cpu_us
	: >"$WRK_RUNS"
	for k in list latest; do
		run_wrk "$k" 2s >/dev/null
		for r in $(seq "$WRK_ROUNDS"); do
			read -r rps errs p50 p99 cpu < <(run_wrk "$k" "$WRK_DURATION")
			echo "$k $r $rps $errs $p50 $p99 $cpu" >>"$WRK_RUNS"
			log "$(printf '%-6s round %d/%d %10s req/s  p50 %s ms  p99 %s ms  CPU %s µs/req  errors %s' \
				"${WRK_PATH[$k]##*/}" "$r" "$WRK_ROUNDS" "$rps" "$p50" "$p99" "$cpu" "$errs")"
		done
	done
fi

# --- 5: what the go command sees ------------------------------------------------

# go_list runs, in the checkout, what loading and testing its packages
# asks of a proxy: go list -deps -test ./... with GOPROXY=$1 and an empty
# module cache (modules downloaded, verified against go.sum, extracted),
# and prints its duration in seconds. There is no checksum database on
# loopback (GOSUMDB=off); go.sum still checks every hash. The cache of the
# last run is removed and written back to disk first, so that no run pays
# for another's writeback.
GOMODCACHE_DIR=$WORK/gomodcache
go_list() {
	local t0 t1
	rm -rf "$GOMODCACHE_DIR"
	sync
	t0=$EPOCHREALTIME
	(cd "$REPO" && exec env GOENV=off GOWORK=off GOTOOLCHAIN=local GOFLAGS=-modcacherw GOMODCACHE="$GOMODCACHE_DIR" \
		GOPROXY="$1" GOSUMDB=off GONOPROXY= GOPRIVATE= GONOSUMDB= go list -deps -test ./... >/dev/null 2>"$WORK/go-list.err") &
	echo $! >"$WORK/client.pid"
	wait $! || die "go list -deps -test ./... with GOPROXY=$1 failed: $(tail -n 5 "$WORK/go-list.err")"
	rm "$WORK/client.pid"
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
GO_RUNS=$WORK/go-runs.txt # server round seconds
: >"$GO_RUNS"
for r in $(seq "$GO_ROUNDS"); do
	s=$(go_list "$UPSTREAM_URL")
	echo "direct $r $s" >>"$GO_RUNS"
	log "go round $r/$GO_ROUNDS straight from the upstream: $s s"
	start_agora
	s=$(go_list "$AGORA_URL")
	echo "agora $r $s" >>"$GO_RUNS"
	log "go round $r/$GO_ROUNDS through a cold agora:       $s s"
done
rm -rf "$GOMODCACHE_DIR"

# --- summary --------------------------------------------------------------------

# runs prints key $3 of the runs of phase $1 and server $2.
runs() {
	awk -v ph="$1" -v s="$2" '$1 == ph && $2 == s' "$RUNS" | while read -r line; do field "$3" "$line"; done
}
wrk_runs() { awk -v k="$1" -v f="$2" '$1 == k { print $f }' "$WRK_RUNS"; }
sum() { awk '{ s += $1 } END { print s + 0 }'; }

params="CLIENTS=$CLIENTS COLD_ROUNDS=$COLD_ROUNDS ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP WRK_CONNS=$WRK_CONNS WRK_THREADS=$WRK_THREADS WRK_ROUNDS=$WRK_ROUNDS WRK_DURATION=$WRK_DURATION GO_ROUNDS=$GO_ROUNDS UPSTREAM_RTT=$UPSTREAM_RTT UPSTREAM_RATE=$UPSTREAM_RATE WARM=$WARM SUMDB=$SUMDB DATABASE=$DATABASE LOGS=$LOGS"
defaults="CLIENTS=16 COLD_ROUNDS=3 ROUNDS=3 DURATION=10s WARMUP=3s WRK_CONNS=64 WRK_THREADS=2 WRK_ROUNDS=3 WRK_DURATION=10s GO_ROUNDS=3 UPSTREAM_RTT=0 UPSTREAM_RATE=0 WARM=on SUMDB=off DATABASE=sqlite LOGS=on"
list_setting=""
[[ $LIST == "$BENCH/replay/requests.txt" ]] || list_setting="LIST=$LIST"

FAILS=0
{
	report_head "Agora as a pull-through cache: replaying a module graph's GOPROXY requests on loopback" \
		"$params" "$defaults" "$list_setting"
	printf 'requests:    %s: %d paths (%d .info, %d .mod, %d @v/list, %d .zip), %.1f MB\n' \
		"${LIST#"$REPO"/}" "$NREQ" "$(count '\.info$' "$LIST")" "$(count '\.mod$' "$LIST")" \
		"$(count '/@v/list$' "$LIST")" "$(count '\.zip$' "$LIST")" "$(awk -v b="$TREE_BYTES" 'BEGIN { print b / 1e6 }')"
	echo "upstream:    nginx (worker_processes auto, sendfile on) serving those files of the module cache; $UPSTREAM_URL"
	echo "link:        between the upstream and its clients (direct and agora): $LINK"
	if [[ $SUMDB == on ]]; then
		echo "agora:       GO_ENV=production, $DB_DESC, AGORA_UPSTREAM=$UPSTREAM_URL, AGORA_SUMDB=$SUMDB_NAME+... (bench/cmd/sumdb,"
		echo "             through the upstream's /sumdb/: every fetched version is verified); logging $LOGS"
	else
		echo "agora:       GO_ENV=production, $DB_DESC, AGORA_UPSTREAM=$UPSTREAM_URL, AGORA_SUMDB=off (fetched versions"
		echo "             are not verified; SUMDB=on verifies them); logging $LOGS"
	fi
	echo "clients:     bench/cmd/replay, $CLIENTS keep-alive clients on one transport; MB = 10^6 body bytes"
	echo
	echo "1-2. cold fill: every path once, $COLD_ROUNDS rounds, each into a fresh Agora; medians"
	d=$(runs cold direct seconds | median)
	a=$(runs cold agora seconds | median)
	ratio=$(awk -v a="$a" -v d="$d" 'BEGIN { printf "%.2f", a / d }')
	cold_errs=$(runs cold agora errors | sum)
	judge "$ratio" "$TARGET_COLD_RATIO" le "$( ((cold_errs == 0)) || echo "$cold_errs errors")"
	printf '  %-28s %9s %9s %9s %9s %9s  %s\n' "" seconds req/s MB/s "p50 ms" "p99 ms" errors
	for s in direct agora; do
		name="straight from the upstream"
		[[ $s == agora ]] && name="through a cold agora"
		printf '  %-28s %9.3f %9.1f %9.2f %9.3f %9.3f  %s\n' "$name" "$(runs cold $s seconds | median)" \
			"$(runs cold $s rps | median)" "$(runs cold $s mbps | median)" "$(runs cold $s p50_ms | median)" \
			"$(runs cold $s p99_ms | median)" "$(runs cold $s errors | sum)"
	done
	printf '  per round, seconds: upstream %s | agora %s\n' "$(runs cold direct seconds | paste -sd ' ')" "$(runs cold agora seconds | paste -sd ' ')"
	printf '  per round, %% of the machine'"'"'s CPU time that went to other processes: upstream %s | agora %s\n' \
		"$(runs cold direct other_pct | paste -sd ' ')" "$(runs cold agora other_pct | paste -sd ' ')"
	printf '  agora'"'"'s CPU time per request (median): %s µs\n' "$(runs cold agora cpu_us | median)"
	printf '  %-58s %8s   target ≤ %s   %s\n' "cold fill time / time straight from the upstream" "$ratio" "$TARGET_COLD_RATIO" "$result"
	if [[ $(field zips "$HASH") != 0 ]]; then
		printf '  floor: x/mod/zip.CheckZip and the h1: hash of the %d zips, %d goroutines, from the page cache: %s s\n' \
			"$(field zips "$HASH")" "$CLIENTS" "$HASH_S"
		printf '         (%s× the time straight from the upstream), which any cache that verifies what it fetches adds\n' \
			"$(awk -v h="$HASH_S" -v d="$d" 'BEGIN { printf "%.1f", h / d }')"
	fi
	echo "  checked: every body agora returned equals the upstream's (SHA-256; @v/list: the same versions"
	echo "  as the go command reads them, without pseudo-versions)"
	echo "  by kind, last round: requests, p50 and p99 ms, busy s (sum of latencies):"
	printf '    %-7s %5s  %-28s %-28s\n' kind n "straight from the upstream" "through a cold agora"
	for k in info mod list zip; do
		dl=$(grep "^KIND kind=$k " "$WORK/cold-direct-$COLD_ROUNDS.out" || true)
		al=$(grep "^KIND kind=$k " "$WORK/cold-agora-$COLD_ROUNDS.out" || true)
		[[ -n $dl && -n $al ]] || continue
		printf '    %-7s %5s  %8s %8s %9s   %8s %8s %9s\n' ".$k" "$(field requests "$dl")" \
			"$(field p50_ms "$dl")" "$(field p99_ms "$dl")" "$(field busy_s "$dl")" \
			"$(field p50_ms "$al")" "$(field p99_ms "$al")" "$(field busy_s "$al")"
	done
	if [[ $cold_errs != 0 ]]; then
		echo "  errors:"
		for r in $(seq "$COLD_ROUNDS"); do sed "s/^/    round $r: /" "$WORK/cold-$r.err"; done | head -n 20
	fi
	echo
	echo "  what agora fetched from the upstream in the last round (its access log, less the reference fetch):"
	printf '    .info %d (%d asked), .mod %d (%d asked), .zip %d (%d asked), @v/list %d (%d asked), /sumdb/ %d, other %d\n' \
		$((F_INFO - D_INFO)) "$D_INFO" $((F_MOD - D_MOD)) "$D_MOD" $((F_ZIP - D_ZIP)) "$D_ZIP" $((F_LIST - D_LIST)) "$D_LIST" "$F_SUMDB" "$F_OTHER"
	judge "$STORE_FAILS" 0 le "$( ((STORE_FAILS == 0)) || echo "in $STORE_FAILS rounds")"
	echo "  what agora stored (files in its storage after the last round):"
	printf '    %d .info, %d .mod, %d .zip; versions with a .mod and no .zip: %d (%d expected)\n' \
		"$S_INFO" "$S_MOD" "$S_ZIP" "$S_MODONLY" "$S_EXPECTED"
	printf '    %-56s %d/%d   target 0/0   %s\n' "zips stored but not asked for / asked for but not stored" "$S_EXTRA" "$S_MISSING" "$result"
	if [[ -s $METRICS_SCRAPE ]]; then
		echo "  agora's /metrics after the last cold fill:"
		grep -E '^agora_(cache_requests_total|upstream_fetches_total)\{' "$METRICS_SCRAPE" | awk '$NF != 0' | sed 's/^/    /' || true
	fi
	if [[ $WARM == on ]]; then
		echo
		echo "3. warm replay: $NWARM paths (those that are files in agora's storage), looped for $DURATION, $ROUNDS rounds"
		echo "   per server, the order reversed every other round; nginx and gostatic (bench/cmd/gostatic: Go's"
		echo "   net/http serving it as agora does, with none of agora's own work) serve agora's storage directory; medians"
		printf '  %-8s %11s %9s %9s %9s %11s %9s  %s\n' server req/s MB/s "p50 ms" "p99 ms" "CPU µs/req" "busy %" errors
		for s in nginx agora gostatic; do
			printf '  %-8s %11.1f %9.2f %9.3f %9.3f %11.1f %9s  %s\n' "$s" "$(runs warm $s rps | median)" \
				"$(runs warm $s mbps | median)" "$(runs warm $s p50_ms | median)" "$(runs warm $s p99_ms | median)" \
				"$(runs warm $s cpu_us | median)" "$(runs warm $s busy_pct | median)" "$(runs warm $s errors | sum)"
		done
		echo "  (CPU µs/req: the server's user+system time per request; busy %: the machine's CPUs, all processes,"
		echo "  the replay client included); interference per round, % of the machine's CPU time that went to"
		printf '  other processes and kernel threads: nginx %s | agora %s | gostatic %s;\n' \
			"$(runs warm nginx other_pct | paste -sd ' ')" "$(runs warm agora other_pct | paste -sd ' ')" "$(runs warm gostatic other_pct | paste -sd ' ')"
		printf '  hypervisor steal: nginx %s | agora %s | gostatic %s\n' \
			"$(runs warm nginx steal_pct | paste -sd ' ')" "$(runs warm agora steal_pct | paste -sd ' ')" "$(runs warm gostatic steal_pct | paste -sd ' ')"
		printf '  per round, req/s: nginx %s | agora %s | gostatic %s\n' "$(runs warm nginx rps | paste -sd ' ')" \
			"$(runs warm agora rps | paste -sd ' ')" "$(runs warm gostatic rps | paste -sd ' ')"
		n=$(runs warm nginx rps | median)
		a=$(runs warm agora rps | median)
		ratio=$(awk -v a="$a" -v n="$n" 'BEGIN { printf "%.3f", a / n }')
		errs=$(runs warm agora errors | sum)
		judge "$ratio" "$TARGET_WARM_RATIO" ge "$( ((errs == 0)) || echo "$errs errors")"
		printf '  %-58s %8s   target ≥ %s   %s\n' "warm req/s, agora/nginx" "$ratio" "$TARGET_WARM_RATIO" "$result"
		g=$(runs warm gostatic rps | median)
		printf '  %-58s %8s   (not judged)\n' "warm req/s, gostatic/nginx: Go's part of the distance" "$(awk -v g="$g" -v n="$n" 'BEGIN { printf "%.3f", g / n }')"
		printf '  %-58s %8s   (not judged)\n' "warm req/s, agora/gostatic: agora's own part" "$(awk -v a="$a" -v g="$g" 'BEGIN { printf "%.3f", a / g }')"
		echo "  agora memory (MiB = 2^20 bytes):"
		printf '    %-56s %6s MiB\n' "VmRSS after the cold fill and warm-up (2 s idle)" "$(mib "$IDLE_KIB")"
		if [[ $HWM_RESET == yes ]]; then
			hwm_note="higher of VmHWM (reset through clear_refs before) and VmRSS every 50 ms"
		else
			hwm_note="VmRSS sampled every 50 ms (clear_refs could not reset VmHWM)"
		fi
		judge "$(mib "$PEAK_KIB")" "$TARGET_WARM_RSS_MIB" le
		printf '    %-56s %6s MiB   target ≤ %s MiB   %s\n' "peak during the warm replay" "$(mib "$PEAK_KIB")" "$TARGET_WARM_RSS_MIB" "$result"
		echo "      ($hwm_note)"
		echo
		echo "4. cached ${WRK_PATH[list]} and ${WRK_PATH[latest]} on agora: wrk, $WRK_THREADS threads,"
		echo "   $WRK_CONNS keep-alive connections, $WRK_DURATION per run, $WRK_ROUNDS runs; medians"
		for k in list latest; do
			rps=$(wrk_runs "$k" 3 | median)
			errs=$(wrk_runs "$k" 4 | sum)
			judge "$rps" "$TARGET_LIST_RPS" ge "$( ((errs == 0)) || echo "$errs errors")"
			printf '  %-8s %10.1f req/s  p50 %s ms  p99 %s ms  CPU %s µs/req   target ≥ %s   %s\n' "${WRK_PATH[$k]##*/}" "$rps" \
				"$(wrk_runs "$k" 5 | median)" "$(wrk_runs "$k" 6 | median)" "$(wrk_runs "$k" 7 | median)" "$TARGET_LIST_RPS" "$result"
		done
	fi
	if ((GO_ROUNDS > 0)); then
		echo
		echo "5. what the go command sees: go list -deps -test ./... in this checkout, empty module cache"
		echo "   (GOSUMDB=off, go.sum checked), $GO_ROUNDS runs straight from the upstream and $GO_ROUNDS through a"
		echo "   fresh agora each, alternating; medians (not a target of its own: the go command's view of item 1-2)"
		d=$(awk '$1 == "direct" { print $3 }' "$GO_RUNS" | median)
		a=$(awk '$1 == "agora" { print $3 }' "$GO_RUNS" | median)
		printf '  %-28s %8.3f s   per run: %s\n' "straight from the upstream" "$d" "$(awk '$1 == "direct" { print $3 }' "$GO_RUNS" | paste -sd ' ')"
		printf '  %-28s %8.3f s   per run: %s\n' "through a cold agora" "$a" "$(awk '$1 == "agora" { print $3 }' "$GO_RUNS" | paste -sd ' ')"
		printf '  %-58s %8s\n' "through a cold agora / straight from the upstream" "$(awk -v a="$a" -v d="$d" 'BEGIN { printf "%.2f", a / d }')"
	fi
	echo
	echo "targets missed: $FAILS"
} | tee "$OUT/replay-results.txt"
log "summary written to $OUT/replay-results.txt"
