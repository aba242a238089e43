module proxyprotobench

go 1.19

require github.com/pires/go-proxyproto v0.4.2

// Debian's golang-github-pires-go-proxyproto-dev (0.4.2-3) source; no module proxy is used.
// run.sh rewrites this in a temporary copy when PROXYPROTO_SRC points elsewhere.
replace github.com/pires/go-proxyproto => /usr/share/gocode/src/github.com/pires/go-proxyproto
