module proxyprotocol.bench/loadgen

go 1.19
