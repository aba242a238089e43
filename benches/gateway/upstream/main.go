// Command upstream is the backend of the gateway benchmark (benches/gateway/run.mjs): it
// reads a PROXY v2 header, then either answers -size bytes after reading -size bytes and
// closes (short), or discards everything until the client's FIN (bulk). Standard library.
package main

import (
	"encoding/binary"
	"flag"
	"io"
	"net"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	mode := flag.String("mode", "short", "short | bulk")
	size := flag.Int("size", 100, "request and reply size (short)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		panic(err)
	}
	reply := make([]byte, *size)
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			head := make([]byte, 16)
			if _, err := io.ReadFull(c, head); err != nil {
				return
			}
			rest := make([]byte, binary.BigEndian.Uint16(head[14:16]))
			if _, err := io.ReadFull(c, rest); err != nil {
				return
			}
			buf := make([]byte, 65536)
			got := 0
			for {
				n, err := c.Read(buf)
				got += n
				if *mode == "short" && got >= *size {
					// The whole request is in: answer and close.
					c.Write(reply)
					return
				}
				if err != nil {
					return
				}
			}
		}(c)
	}
}
