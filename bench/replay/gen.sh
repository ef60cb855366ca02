#!/usr/bin/env bash
# gen.sh writes bench/replay/requests.txt: the GOPROXY requests that the go
# command makes to build and test Agora itself from an empty module cache,
# which bench/replay.sh replays. One escaped request path per line, in this
# order (each part sorted by module path, then version):
#
#   1. for every module of the build list (go list -m all): its .info and
#      .mod, as go list -m all asks for them;
#   2. the .mod of every other module version whose requirements the go
#      command reads to select versions (left-hand sides of go mod graph);
#   3. @v/list of the main module's direct requirements, as go get asks;
#   4. the .zip of every module that go mod download fetches (the modules
#      that provide packages to build and test the main module, tools
#      included).
#
# It works offline from the module cache (GOPROXY=off), so the list is what
# the checkout's go.mod and go.sum say, and fails if a file is missing from
# $(go env GOMODCACHE)/cache/download: run `go mod download all` first (a
# zip that no proxy serves any more is fine if no build needs it).
#
# Usage: bench/replay/gen.sh [output file]   (default bench/replay/requests.txt)
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$DIR/../.." && pwd)
OUT=${1:-$DIR/requests.txt}

die() {
	printf 'gen.sh: %s\n' "$*" >&2
	exit 1
}

export GOPROXY=off GOFLAGS=-mod=readonly LC_ALL=C
cd "$REPO"
DL=$(go env GOMODCACHE)/cache/download

# escape prints its arguments (module paths or versions) in the escaped form
# of the GOPROXY protocol: every upper-case letter as '!' and its lower case.
escape() { sed 's/[A-Z]/!\L&/g'; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agora-gen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The build list, without the main module: "path version".
go list -m -f '{{if not .Main}}{{.Path}} {{.Version}}{{end}}' all >"$tmp/buildlist" 2>"$tmp/err" ||
	die "go list -m all failed (run 'go mod download all' first): $(cat "$tmp/err")"
# Every module version whose go.mod the go command reads to load the
# graph: those with requirements in go mod graph (with graph pruning, the
# requirements of many others are never loaded): "path version".
go mod graph 2>"$tmp/err" | awk '{ print $1 }' | grep '@' | grep -v -e '^go@' -e '^toolchain@' |
	sed 's/@/ /' | sort -u >"$tmp/graph" || die "go mod graph failed: $(cat "$tmp/err")"
# The modules go mod download fetches: "path version".
go mod download -json 2>"$tmp/err" | awk -F'"' '
	/^\t"Path"/ { p = $4 }
	/^\t"Version"/ { print p, $4 }' | sort -u >"$tmp/zips" || true
[[ -s $tmp/zips ]] || die "go mod download -json listed nothing: $(cat "$tmp/err")"
# The main module's direct requirements: "path".
go list -m -f '{{if not (or .Main .Indirect)}}{{.Path}}{{end}}' all | sort -u >"$tmp/direct"

{
	sort -u "$tmp/buildlist" | escape | awk '{ print "/" $1 "/@v/" $2 ".info"; print "/" $1 "/@v/" $2 ".mod" }'
	sort -u "$tmp/buildlist" | comm -13 - "$tmp/graph" | escape | awk '{ print "/" $1 "/@v/" $2 ".mod" }'
	escape <"$tmp/direct" | awk '{ print "/" $1 "/@v/list" }'
	escape <"$tmp/zips" | awk '{ print "/" $1 "/@v/" $2 ".zip" }'
} >"$tmp/requests"

missing=0
while read -r p; do
	if [[ ! -f $DL$p ]]; then
		printf 'gen.sh: not in the module cache: %s%s\n' "$DL" "$p" >&2
		missing=$((missing + 1))
	fi
done <"$tmp/requests"
((missing == 0)) || die "$missing files are missing from $DL: run 'go mod download all' in $REPO first"

mv "$tmp/requests" "$OUT"
printf 'gen.sh: wrote %s: %d requests (%d .info, %d .mod, %d list, %d .zip)\n' "$OUT" "$(wc -l <"$OUT")" \
	"$(grep -c '\.info$' "$OUT")" "$(grep -c '\.mod$' "$OUT")" "$(grep -c '/@v/list$' "$OUT")" "$(grep -c '\.zip$' "$OUT")" >&2
