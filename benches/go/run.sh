#!/usr/bin/env bash
# Build and run the go-proxyproto benchmark offline. The binary (and a copy of
# the module) go to a temporary directory; nothing is written inside the repo.
# PROXYPROTO_SRC overrides the library source directory.
set -euo pipefail
case "${BASH_SOURCE[0]}" in */*) cd "${BASH_SOURCE[0]%/*}" ;; esac

SRC="${PROXYPROTO_SRC:-/usr/share/gocode/src/github.com/pires/go-proxyproto}"

if ! command -v go >/dev/null 2>&1; then
  echo "run.sh: 'go' not found on PATH (install golang-go, Go >= 1.19)" >&2
  exit 1
fi
if [ ! -f "$SRC/go.mod" ] || [ ! -f "$SRC/header.go" ]; then
  echo "run.sh: go-proxyproto source not found at $SRC" >&2
  echo "run.sh: install golang-github-pires-go-proxyproto-dev or set PROXYPROTO_SRC" >&2
  exit 1
fi
if command -v dpkg-query >/dev/null 2>&1; then
  ver="$(dpkg-query -W -f='${Version}' golang-github-pires-go-proxyproto-dev 2>/dev/null || true)"
  case "$ver" in
    0.4.2*|"") ;;
    *) echo "run.sh: warning: installed go-proxyproto is $ver, output says 0.4.2" >&2 ;;
  esac
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp go.mod main.go "$tmp/"

export GOPROXY=off GOFLAGS=-mod=mod GONOSUMDB='*' GOSUMDB=off GO111MODULE=on
cd "$tmp"
go mod edit -replace "github.com/pires/go-proxyproto=$SRC"
go build -o "$tmp/proxyprotobench" .
"$tmp/proxyprotobench"
