module proxyprotocol.bench/load

go 1.19
