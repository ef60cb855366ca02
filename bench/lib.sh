# lib.sh holds the shell helpers that serve.sh and replay.sh share. It is
# sourced, not run; the script sets HOST (the loopback address) and REPO
# (the checkout) first.
# Every helper that fails calls die, which names the script.

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# cleanup, the scripts' EXIT trap, stops what the script started (the
# sampler of $SAMPLER_PID, which stops when $SAMPLER_STOP exists; the client
# whose PID is in $WORK/client.pid; nginx, $NGINX_PID; agora, $AGORA_PID;
# replay.sh's emulated link, $WAN_PID; then what the script's cleanup_extra,
# if it defines one, cleans up),
# shows the end of their logs if the script failed, and removes $WORK
# unless KEEP=1.
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[[ -n $SAMPLER_STOP ]] && : >"$SAMPLER_STOP"
	stop_pid "$SAMPLER_PID"
	if [[ -n $WORK && -s $WORK/client.pid ]]; then
		stop_pid "$(<"$WORK/client.pid")"
	fi
	stop_pid "$NGINX_PID"
	stop_pid "$AGORA_PID"
	stop_pid "${WAN_PID:-}"
	if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
	if ((rc != 0)) && [[ -n $WORK ]]; then
		for f in "$WORK/agora.log" "$WORK/nginx/error.log"; do
			[[ -s $f ]] || continue
			printf '\n--- last lines of %s ---\n' "$f" >&2
			tail -n 20 "$f" >&2
		done
	fi
	if [[ -n $WORK ]]; then
		if [[ $KEEP == 1 ]]; then
			log "kept $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}

# arm_cleanup empties what cleanup looks at and makes it the EXIT trap;
# Ctrl-C and TERM exit through it too.
arm_cleanup() {
	WORK="" AGORA_PID="" NGINX_PID="" WAN_PID="" SAMPLER_PID="" SAMPLER_STOP=""
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# install_missing installs the commands named, from Debian's packages of
# the same names, if they are missing.
install_missing() {
	local need=() c
	for c in "$@"; do
		command -v "$c" >/dev/null || need+=("$c")
	done
	((${#need[@]})) || return 0
	log "installing ${need[*]} (apt-get)"
	local sudo=()
	[[ $(id -u) == 0 ]] || sudo=(sudo --) # as .ci/run does
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
}

# require stops the script if a command named is missing.
require() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || die "$c is needed"
	done
}

# stop_pid stops one process this script started: TERM, then KILL after 10 s.
stop_pid() {
	local pid=$1
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# free_port prints a loopback TCP port that nothing listens on, below the
# kernel's ephemeral range, so that no client connection holds it either.
free_port() {
	local low base=10000 p
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range
	((low > base + 1000)) || base=1024
	for _ in $(seq 100); do
		p=$((base + RANDOM % (low - base)))
		if ! (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# started waits until the server just started as process $2 answers $1 with
# 200, and reports whether it did: false if the process exited (its port was
# taken after all).
started() {
	local url=$1 pid=$2
	for _ in $(seq 200); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			return 1
		fi
		if [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) == 200 ]]; then
			return 0
		fi
		sleep 0.05
	done
	die "$url did not answer within 10 s"
}

# vm_kib prints a field of /proc/PID/status (VmRSS, VmHWM) in KiB.
vm_kib() {
	local k v _
	while read -r k v _; do
		if [[ $k == "$2:" ]]; then
			echo "$v"
			return 0
		fi
	done <"/proc/$1/status"
	die "no $2 in /proc/$1/status"
}

# report_head prints the head of a summary: title $1, then the date, the
# machine, the versions (go, nginx, wrk, agora's revision), the settings $2
# and the command that reproduces the run: the script alone when $2 equals
# the defaults $3, else with the settings, after any extra setting $4.
report_head() {
	local script=bench/${0##*/} revision reproduce
	revision=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]]; then revision+=" (with uncommitted changes)"; fi
	reproduce=$script
	[[ $2 == "$3" ]] || reproduce="$2 $script"
	[[ -z ${4:-} ]] || reproduce="$4 $reproduce"
	echo "$1"
	echo
	echo "date:        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "machine:     nproc $(nproc), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
		"$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "versions:    $(go version | awk '{ print $3 }'), $(nginx -v 2>&1 | sed 's/^nginx version: //')," \
		"$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }' || true), agora $revision"
	echo "parameters:  $2"
	echo "reproduce:   $reproduce"
}

# rss_watch starts watching the memory of process $1: it resets the
# process's VmHWM, the peak RSS, by writing 5 to its clear_refs (HWM_RESET
# says whether the kernel allowed it: yes or no) and samples its VmRSS every
# 50 ms into file $2, one "EPOCHREALTIME KiB" line each, until rss_peak.
rss_watch() {
	if echo 5 >"/proc/$1/clear_refs" 2>/dev/null; then
		HWM_RESET=yes
	else
		HWM_RESET=no
	fi
	SAMPLES=$2
	SAMPLER_STOP=$2.stop
	rm -f "$SAMPLER_STOP"
	(
		while [[ ! -e $SAMPLER_STOP ]]; do
			echo "$EPOCHREALTIME $(vm_kib "$1" VmRSS)"
			sleep 0.05
		done
	) >"$SAMPLES" &
	SAMPLER_PID=$!
}

# rss_peak stops the sampling that rss_watch started for process $1 and
# sets HWM_KIB (its VmHWM), SAMPLED_PEAK_KIB (the highest sample), NSAMPLES
# and PEAK_KIB: the higher of the sampled peak and VmHWM, if it was reset.
rss_peak() {
	: >"$SAMPLER_STOP"
	wait "$SAMPLER_PID" || true
	SAMPLER_PID=""
	HWM_KIB=$(vm_kib "$1" VmHWM)
	SAMPLED_PEAK_KIB=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$SAMPLES")
	NSAMPLES=$(wc -l <"$SAMPLES")
	PEAK_KIB=$SAMPLED_PEAK_KIB
	if [[ $HWM_RESET == yes ]] && ((HWM_KIB > PEAK_KIB)); then
		PEAK_KIB=$HWM_KIB
	fi
}

# nginx_conf writes $WORK/nginx/nginx.conf: nginx as commonly deployed for
# static files (sendfile on, tcp_nopush on, no open_file_cache) with $1
# worker processes, Agora's Content-Types, more http-level directives $2 and
# the server blocks $3. keepalive_requests is raised from its default of
# 1000 because Go's server has no such limit: otherwise nginx alone would pay
# for reconnecting.
nginx_conf() {
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
user root;
worker_processes $1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events {
	worker_connections 1024;
}
http {
	types {
		application/json info;
		text/plain mod;
		application/zip zip;
	}
	default_type text/plain;
	charset utf-8;
	charset_types text/plain;
	sendfile on;
	tcp_nopush on;
	tcp_nodelay on;
	keepalive_timeout 120s;
	keepalive_requests 1000000;
	$2
	client_body_temp_path $WORK/nginx/client_body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
$3
}
EOF
}

# storage_server prints an nginx server block on port $1 serving Agora's
# storage directory $STORAGE as Agora serves it (immutable files), with
# access_log directive $2.
storage_server() {
	cat <<EOF
	server {
		listen $HOST:$1;
		root $STORAGE;
		$2
		location / {
			add_header Cache-Control "public, max-age=31536000, immutable";
		}
	}
EOF
}

# mib prints KiB $1 in MiB, one decimal.
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks prints the user+system CPU time, in clock ticks, that the
# processes $1 (a list of PIDs) have used so far.
cpu_ticks() {
	local t=0 p a
	for p in $1; do
		read -r -a a <"/proc/$p/stat"
		t=$((t + a[13] + a[14]))
	done
	echo "$t"
}

# median reads numbers, one per line, and prints their median.
median() {
	sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# verdict prints PASS if $1 meets target $2 (op $3: ge, at least; le, at
# most), else FAIL.
# judge sets result to the verdict of value $1 against target $2 (op $3,
# as verdict's), or to FAIL with reason $4 if one is given (errors, a
# failed upload), and counts a FAIL in FAILS.
judge() {
	result=$(verdict "$1" "$2" "$3")
	[[ -z ${4:-} ]] || result="FAIL ($4)"
	[[ $result == PASS ]] || FAILS=$((FAILS + 1))
}
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == "ge") ? v >= t : v <= t; print ok ? "PASS" : "FAIL" }'; }
