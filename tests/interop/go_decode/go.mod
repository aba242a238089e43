module ppdecode

go 1.19

require github.com/pires/go-proxyproto v0.4.2

// Debian's golang-github-pires-go-proxyproto-dev (0.4.2) source; no module proxy is used.
// tests/deno/differential_go.test.ts copies this file and main.go to a temporary directory
// and builds there with GOPROXY=off GOFLAGS=-mod=mod GOSUMDB=off, rewriting this path when
// PROXYPROTO_SRC points elsewhere.
replace github.com/pires/go-proxyproto => /usr/share/gocode/src/github.com/pires/go-proxyproto
