#!/usr/bin/env bash
# serve.sh measures how fast Agora serves a warm module from disk, next to
# nginx serving the very same storage directory as static files, and how
# much memory Agora holds idle and while it receives a large upload.
#
# Everything runs on 127.0.0.1 and stops by itself; every process the script
# starts is stopped on exit, also on failure or Ctrl-C. See bench/README.md.
#
# Usage: bench/serve.sh
#
# Settings (environment):
#   ROUNDS=5          measured wrk runs per file and server (median reported)
#   DURATION=10s      length of one wrk run
#   WARMUP=3s         length of the unmeasured wrk run per file and server
#   CONNS=16          wrk connections (keep-alive)
#   THREADS=2         wrk threads
#   LOGS=on           on: both servers log every request to a file
#                     (agora's stderr, nginx's access_log); off: neither
#                     logs requests (AGORA_LOG_LEVEL=warn, access_log off)
#   PIN=0             1: servers on CPU 1, wrk on CPU 0 (taskset); 0: all
#                     share every CPU
#   UPLOAD_SIZE=200MiB  random data in the upload-memory test's zip
#   KEEP=0            1: keep the temporary directory (data, logs)
#
# Output: progress on stderr; the summary on stdout and in
# bench/out/serve-results.txt.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}
LOGS=${LOGS:-on}
PIN=${PIN:-0}
UPLOAD_SIZE=${UPLOAD_SIZE:-200MiB}
KEEP=${KEEP:-0}

# Targets: agora/nginx ratios, and agora's memory in MiB.
TARGET_SMALL_RATIO=0.55 # .info and .mod req/s
TARGET_ZIP_RATIO=0.95   # .zip MB/s
TARGET_IDLE_MIB=30
TARGET_UPLOAD_DELTA_MIB=64

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
OUT=$BENCH/out
HOST=127.0.0.1
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
MODVER=v1.0.0

case $LOGS in on | off) ;; *) die "LOGS=$LOGS: want on or off" ;; esac
case $PIN in 0 | 1) ;; *) die "PIN=$PIN: want 0 or 1" ;; esac
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive number"

# --- processes and clean-up ---------------------------------------------------

arm_cleanup

# --- tools ----------------------------------------------------------------------

install_missing nginx wrk
require go curl cmp taskset

mkdir -p "$OUT"
log "building agora and mkzip into $OUT"
# Agora as deployed (make build): static, without cgo.
(cd "$REPO" && CGO_ENABLED=0 go build -o "$OUT/agora" . && go build -o "$OUT/mkzip" ./bench/cmd/mkzip)
AGORA=$OUT/agora

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agora-bench.XXXXXX")
DATA=$WORK/data
STORAGE=$DATA/storage
mkdir -p "$DATA" "$WORK/nginx" "$WORK/zips"

if [[ $PIN == 1 ]]; then
	(($(nproc) >= 2)) || die "PIN=1 needs 2 CPUs"
	SERVER_RUN=(taskset -c 1)
	CLIENT_RUN=(taskset -c 0)
	NGINX_WORKERS=1
else
	SERVER_RUN=()
	CLIENT_RUN=()
	NGINX_WORKERS=auto
fi

# --- test modules -------------------------------------------------------------

log "generating module zips"
"$OUT/mkzip" -path bench.invalid/small -version $MODVER -o "$WORK/zips/small.zip"
"$OUT/mkzip" -path bench.invalid/large -version $MODVER -size 10MiB -files 4 -seed 1 -o "$WORK/zips/large.zip"
"$OUT/mkzip" -path bench.invalid/upload -version $MODVER -size "$UPLOAD_SIZE" -files 8 -seed 2 -o "$WORK/zips/upload.zip"

# --- agora ----------------------------------------------------------------------

# Agora runs in the work directory, so that no .env file of the checkout
# applies, with every setting spelled out.
agora_env=(
	GO_ENV=production
	SESSION_SECRET="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
	AGORA_DATA_DIR="$DATA"
	AGORA_STORAGE_DIR="$STORAGE"
	DATABASE_URL="sqlite3://$DATA/agora.db"
	AGORA_READ_AUTH=public
)
agora() { (cd "$WORK" && env "${agora_env[@]}" "$AGORA" "$@"); }

# With LOGS=off, Agora logs no requests (AGORA_LOG_LEVEL=warn), only what
# goes wrong, still to the file.
AGORA_LOG=$WORK/agora.log
if [[ $LOGS == on ]]; then
	AGORA_LOG_NOTE="agora's stderr to a file"
else
	agora_env+=(AGORA_LOG_LEVEL=warn)
	AGORA_LOG_NOTE="agora at AGORA_LOG_LEVEL=warn"
fi
log "creating the admin user and a publish token"
agora user create bench --role admin >/dev/null
TOKEN=$(agora token create bench --scope publish --name serve.sh 2>/dev/null)

for attempt in 1 2 3 4; do
	((attempt < 4)) || die "agora did not start"
	AGORA_PORT=$(free_port)
	AGORA_URL=http://$HOST:$AGORA_PORT
	log "starting agora on $AGORA_URL"
	(cd "$WORK" && exec env "${agora_env[@]}" ADDR="$HOST:$AGORA_PORT" "${SERVER_RUN[@]}" "$AGORA" 2>>"$AGORA_LOG" >/dev/null) &
	AGORA_PID=$!
	started "$AGORA_URL/healthz" "$AGORA_PID" && break
	AGORA_PID=""
done

# publish uploads zip as module@v1.0.0 and prints the HTTP status and the
# upload's duration in seconds.
publish() {
	curl -sS -o "$WORK/publish-${2##*/}.json" -w '%{http_code} %{time_total}\n' \
		-H "Authorization: Bearer $TOKEN" -T "$1" \
		"$AGORA_URL/api/v1/modules/$2/@v/$MODVER.zip"
}
for m in small large; do
	read -r code _ < <(publish "$WORK/zips/$m.zip" "bench.invalid/$m")
	[[ $code == 201 ]] || die "publishing bench.invalid/$m: HTTP $code: $(cat "$WORK/publish-$m.json" 2>/dev/null)"
done

# --- nginx ----------------------------------------------------------------------

KINDS=(info mod zip)
declare -A URLPATH=(
	[info]=/bench.invalid/small/@v/$MODVER.info
	[mod]=/bench.invalid/small/@v/$MODVER.mod
	[zip]=/bench.invalid/large/@v/$MODVER.zip
)

if [[ $LOGS == on ]]; then
	NGINX_ACCESS_LOG="access_log $WORK/nginx/access.log combined;"
else
	NGINX_ACCESS_LOG="access_log off;"
fi
# write_nginx_conf writes nginx's configuration for port $1: Agora's
# storage, with the headers made alike Agora's (same Content-Type and
# Cache-Control).
write_nginx_conf() {
	nginx_conf "$NGINX_WORKERS" "$NGINX_ACCESS_LOG" "$(storage_server "$1" "")"
}
for attempt in 1 2 3 4; do
	((attempt < 4)) || die "nginx did not start"
	NGINX_PORT=$(free_port)
	NGINX_URL=http://$HOST:$NGINX_PORT
	write_nginx_conf "$NGINX_PORT"
	log "starting nginx on $NGINX_URL (worker_processes $NGINX_WORKERS)"
	"${SERVER_RUN[@]}" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
	NGINX_PID=$!
	started "$NGINX_URL${URLPATH[info]}" "$NGINX_PID" && break
	NGINX_PID=""
done

# --- same bytes from both -------------------------------------------------------

log "checking that both servers return the same bytes"
declare -A SIZE
for k in "${KINDS[@]}"; do
	for s in nginx agora; do
		url=$NGINX_URL
		[[ $s == agora ]] && url=$AGORA_URL
		code=$(curl -sS -o "$WORK/body-$k-$s" -w '%{http_code}' "$url${URLPATH[$k]}")
		[[ $code == 200 ]] || die "$s: GET ${URLPATH[$k]}: HTTP $code"
	done
	cmp "$WORK/body-$k-nginx" "$WORK/body-$k-agora" || die "${URLPATH[$k]}: nginx and agora bodies differ"
	SIZE[$k]=$(stat -c %s "$WORK/body-$k-agora")
done
cmp "$WORK/body-zip-agora" "$WORK/zips/large.zip" || die "the served zip differs from the uploaded one"

# --- throughput -----------------------------------------------------------------

# Each server's processes, for CPU accounting: agora; nginx's master and
# workers.
declare -A SERVER_PIDS=(
	[agora]=$AGORA_PID
	[nginx]="$NGINX_PID $(pgrep -P "$NGINX_PID" | paste -sd ' ')"
)

# machine_ticks prints, for the whole machine and in clock ticks: busy CPU
# time, time stolen by the hypervisor, all time; then the CPU time of this
# script's finished children (wrk, above all).
machine_ticks() {
	local a b
	read -r -a a </proc/stat
	read -r -a b <"/proc/$$/stat"
	echo "$((a[1] + a[2] + a[3] + a[6] + a[7])) $((a[8])) $((a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7] + a[8])) $((b[15] + b[16]))"
}

# run_wrk runs wrk for duration $3 against server $1's URL for file kind $2,
# and prints: req/s MB/s errors p50_ms p99_ms cpu_us_per_request steal_%
# (MB = 10^6 bytes; CPU is the server's user+system time; steal is the share
# of the machine's time the hypervisor took meanwhile).
run_wrk() {
	local base=$NGINX_URL out line t0 t1 m0 m1
	[[ $1 == agora ]] && base=$AGORA_URL
	read -r -a m0 < <(machine_ticks)
	t0=$(cpu_ticks "${SERVER_PIDS[$1]}")
	# In the background, so that cleanup can find and stop it.
	"${CLIENT_RUN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$3" -s "$BENCH/report.lua" "$base${URLPATH[$2]}" >"$WORK/wrk.out" 2>&1 &
	echo $! >"$WORK/client.pid"
	wait $! || die "wrk against $1 failed: $(cat "$WORK/wrk.out")"
	rm "$WORK/client.pid"
	t1=$(cpu_ticks "${SERVER_PIDS[$1]}")
	read -r -a m1 < <(machine_ticks)
	out=$(<"$WORK/wrk.out")
	line=$(grep '^RESULT ' <<<"$out") || die "wrk against $1 printed no RESULT line: $out"
	awk -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" -v steal=$((m1[1] - m0[1])) -v all=$((m1[2] - m0[2])) '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
		s = r["duration_us"] / 1e6
		printf "%.1f %.2f %d %.3f %.3f %.1f %.0f\n", r["requests"] / s, r["bytes"] / r["duration_us"],
			r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"],
			r["p50_us"] / 1000, r["p99_us"] / 1000, ticks / hz * 1e6 / r["requests"], steal / all * 100
	}' <<<"$line"
}

log "warming up: $WARMUP of wrk per file and server"
for k in "${KINDS[@]}"; do
	for s in nginx agora; do
		run_wrk "$s" "$k" "$WARMUP" >/dev/null
	done
done

sleep 2
IDLE_KIB=$(vm_kib "$AGORA_PID" VmRSS)
log "agora idle VmRSS after warm-up: $(mib "$IDLE_KIB") MiB"

RUNS=$WORK/runs.txt # kind server round rps mbps errors p50 p99 cpu_us steal_pct
: >"$RUNS"
read -r BUSY0 STEAL0 ALL0 CHILD0 < <(machine_ticks)
SERVERS0=$(cpu_ticks "${SERVER_PIDS[agora]} ${SERVER_PIDS[nginx]}")
for k in "${KINDS[@]}"; do
	for r in $(seq "$ROUNDS"); do
		# Alternate who goes first, so that drift (heat, page cache,
		# logs growing) falls on both alike.
		order=(nginx agora)
		((r % 2 == 0)) && order=(agora nginx)
		for s in "${order[@]}"; do
			read -r rps mbps errs p50 p99 cpu steal < <(run_wrk "$s" "$k" "$DURATION")
			echo "$k $s $r $rps $mbps $errs $p50 $p99 $cpu $steal" >>"$RUNS"
			log "$(printf '.%-4s round %d/%d %-5s %10s req/s %9s MB/s  p50 %s ms  p99 %s ms  CPU %s µs/req  steal %s%%  errors %s' \
				"$k" "$r" "$ROUNDS" "$s" "$rps" "$mbps" "$p50" "$p99" "$cpu" "$steal" "$errs")"
		done
	done
done

# What else used the CPUs meanwhile: busy time that was neither the
# servers' nor wrk's (other processes, kernel threads), and steal.
read -r BUSY1 STEAL1 ALL1 CHILD1 < <(machine_ticks)
SERVERS1=$(cpu_ticks "${SERVER_PIDS[agora]} ${SERVER_PIDS[nginx]}")
OTHER_PCT=$(awk -v b=$((BUSY1 - BUSY0)) -v s=$((SERVERS1 - SERVERS0)) -v c=$((CHILD1 - CHILD0)) -v all=$((ALL1 - ALL0)) \
	'BEGIN { o = (b - s - c) / all * 100; printf "%.1f", o < 0 ? 0 : o }')
STEAL_PCT=$(awk -v st=$((STEAL1 - STEAL0)) -v all=$((ALL1 - ALL0)) 'BEGIN { printf "%.1f", st / all * 100 }')
sleep 2
AFTER_KIB=$(vm_kib "$AGORA_PID" VmRSS)

# --- upload memory --------------------------------------------------------------

UPLOAD_BYTES=$(stat -c %s "$WORK/zips/upload.zip")
log "uploading a $(mib $((UPLOAD_BYTES / 1024))) MiB zip while sampling agora's VmRSS every 50 ms"
sleep 2
BASE_KIB=$(vm_kib "$AGORA_PID" VmRSS)
rss_watch "$AGORA_PID" "$WORK/rss-samples.txt"
read -r UPLOAD_CODE UPLOAD_SECS < <(publish "$WORK/zips/upload.zip" bench.invalid/upload)
sleep 0.2
rss_peak "$AGORA_PID"
[[ $UPLOAD_CODE == 201 ]] || log "WARNING: the upload returned HTTP $UPLOAD_CODE, not 201: $(cat "$WORK/publish-upload.json")"
DELTA_KIB=$((PEAK_KIB - BASE_KIB))

# --- summary --------------------------------------------------------------------

# runs_of prints field $3 of the runs of kind $1 and server $2.
runs_of() { awk -v k="$1" -v s="$2" -v f="$3" '$1 == k && $2 == s { print $f }' "$RUNS"; }
human_size() { awk -v b="$1" 'BEGIN { if (b >= 1e6) printf "%.1f MB", b / 1e6; else printf "%d B", b }'; }

workers=$NGINX_WORKERS
[[ $workers == auto ]] && workers="auto (= $(nproc))"
if [[ $PIN == 1 ]]; then
	cpus_note="servers pinned to CPU 1, wrk to CPU 0 (taskset); agora's GOMAXPROCS follows its affinity (1)"
else
	cpus_note="not pinned: wrk and the server under test share all $(nproc) CPUs; agora GOMAXPROCS = $(nproc)"
fi
if [[ $LOGS == on ]]; then
	log_note="on for both: $AGORA_LOG_NOTE (one slog line per request), nginx access_log to a file (combined)"
else
	log_note="off for both: $AGORA_LOG_NOTE, nginx access_log off"
fi
params="ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS THREADS=$THREADS LOGS=$LOGS PIN=$PIN UPLOAD_SIZE=$UPLOAD_SIZE"
defaults="ROUNDS=5 DURATION=10s WARMUP=3s CONNS=16 THREADS=2 LOGS=on PIN=0 UPLOAD_SIZE=200MiB"

FAILS=0
{
	report_head "Agora vs nginx: warm serving on loopback, and Agora's memory" "$params" "$defaults"
	echo "agora:       GO_ENV=production, SQLite, storage on local disk; $AGORA_URL"
	echo "nginx:       worker_processes $workers, sendfile on, tcp_nopush on, keepalive_requests 1000000,"
	echo "             root = agora's storage directory; $NGINX_URL"
	echo "logging:     $log_note"
	echo "CPUs:        $cpus_note"
	echo "wrk:         $THREADS threads, $CONNS keep-alive connections, $DURATION per run, $ROUNDS rounds per server"
	echo "             alternating which server goes first; medians below; MB = 10^6 bytes"
	echo "interference: during the measured runs, $OTHER_PCT% of the machine's CPU time went to other processes and"
	echo "             kernel threads, $STEAL_PCT% was stolen by the hypervisor (both add noise)"
	echo
	printf '%-6s %-9s %-6s %14s %14s %12s %8s  %s\n' file size metric "nginx median" "agora median" agora/nginx target result
	for k in "${KINDS[@]}"; do
		if [[ $k == zip ]]; then
			metric=MB/s field=5 target=$TARGET_ZIP_RATIO
		else
			metric=req/s field=4 target=$TARGET_SMALL_RATIO
		fi
		n=$(runs_of "$k" nginx "$field" | median)
		a=$(runs_of "$k" agora "$field" | median)
		ratio=$(awk -v a="$a" -v n="$n" 'BEGIN { printf "%.3f", a / n }')
		judge "$ratio" "$target" ge
		printf '%-6s %-9s %-6s %14.1f %14.1f %12s %8s  %s\n' ".$k" "$(human_size "${SIZE[$k]}")" "$metric" "$n" "$a" "$ratio" ">= $target" "$result"
	done
	echo
	echo "per round (req/s; MB/s for .zip), hypervisor steal during each run, p50/p99 latency medians, errors:"
	for k in "${KINDS[@]}"; do
		field=4
		[[ $k == zip ]] && field=5
		for s in nginx agora; do
			printf '  .%-4s %-5s %s | steal %% %s | p50 %s ms, p99 %s ms | errors %s\n' "$k" "$s" \
				"$(runs_of "$k" "$s" "$field" | paste -sd ' ')" "$(runs_of "$k" "$s" 10 | paste -sd ' ')" \
				"$(runs_of "$k" "$s" 7 | median)" "$(runs_of "$k" "$s" 8 | median)" \
				"$(runs_of "$k" "$s" 6 | awk '{ s += $1 } END { print s + 0 }')"
		done
	done
	echo
	echo "server CPU per request (user+system time of the server's processes over the run / requests; median):"
	printf '  %-6s %12s %12s %12s\n' file "nginx µs" "agora µs" agora/nginx
	for k in "${KINDS[@]}"; do
		n=$(runs_of "$k" nginx 9 | median)
		a=$(runs_of "$k" agora 9 | median)
		printf '  %-6s %12.1f %12.1f %12s\n' ".$k" "$n" "$a" "$(awk -v a="$a" -v n="$n" 'BEGIN { printf "%.2f", a / n }')"
	done
	echo
	echo "agora memory (VmRSS from /proc/PID/status; MiB = 2^20 bytes):"
	judge "$(mib "$IDLE_KIB")" "$TARGET_IDLE_MIB" le
	printf '  %-52s %9s MiB   target ≤ %s MiB   %s\n' "idle, after start-up and warm-up (2 s idle)" "$(mib "$IDLE_KIB")" "$TARGET_IDLE_MIB" "$result"
	printf '  %-52s %9s MiB\n' "idle, after the serving benchmark (2 s idle)" "$(mib "$AFTER_KIB")"
	printf '  upload of a %s MiB module zip (%s bytes): HTTP %s in %ss\n' "$(mib $((UPLOAD_BYTES / 1024)))" "$UPLOAD_BYTES" "$UPLOAD_CODE" "$UPLOAD_SECS"
	printf '  %-52s %9s MiB\n' "baseline before the upload (2 s idle)" "$(mib "$BASE_KIB")"
	printf '  %-52s %9s MiB\n' "peak, sampled every 50 ms ($NSAMPLES samples)" "$(mib "$SAMPLED_PEAK_KIB")"
	if [[ $HWM_RESET == yes ]]; then
		printf '  %-52s %9s MiB\n' "peak, VmHWM (reset through clear_refs before)" "$(mib "$HWM_KIB")"
	else
		printf '  %-52s %9s\n' "peak, VmHWM" "n/a (clear_refs could not reset it)"
	fi
	judge "$(mib "$DELTA_KIB")" "$TARGET_UPLOAD_DELTA_MIB" le "$([[ $UPLOAD_CODE == 201 ]] || echo "HTTP $UPLOAD_CODE")"
	printf '  %-52s %9s MiB   target ≤ %s MiB   %s\n' "delta, higher peak - baseline" "$(mib "$DELTA_KIB")" "$TARGET_UPLOAD_DELTA_MIB" "$result"
	echo
	echo "targets missed: $FAILS"
} | tee "$OUT/serve-results.txt"
log "summary written to $OUT/serve-results.txt"
