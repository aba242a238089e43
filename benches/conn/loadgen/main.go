// Command loadgen drives the per-connection benchmark (benches/conn/run.mjs): a compiled
// client, so that the client is not the bottleneck. Standard library only.
//
// Modes:
//
//	short  -c workers for -d seconds; each loops: connect, write header + -size request
//	       bytes in one write, read the -size byte reply and the server's FIN, close.
//	idle   open -n connections, each writes the header (+ -payload bytes in the same
//	       write) and stays open; prints READY, waits for a line on stdin (or EOF), closes.
//	bulk   -c connections each write the header, then payload for -d seconds, then FIN;
//	       waits for the server's FIN. Reports bytes after the header per second.
//
// -header v1|v2|v2aws|none picks the PROXY header: v2aws is a v2 TCP4 header with the TLVs
// an AWS NLB sends behind a VPC endpoint (CRC32C and 0xEA/0x01 vpce id). Results are one
// JSON line on stdout.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

func v2Header(aws bool) []byte {
	var tlvs []byte
	if aws {
		// CRC32C (type 0x03, 4 bytes, computed below) then PP2_TYPE_AWS (0xEA):
		// subtype 0x01 (VPC endpoint id) + the id, as AWS NLB sends it.
		tlvs = append(tlvs, 0x03, 0, 4, 0, 0, 0, 0)
		vpce := "vpce-08d2bf15fac5001c9"
		tlvs = append(tlvs, 0xEA, 0, byte(1+len(vpce)), 0x01)
		tlvs = append(tlvs, vpce...)
	}
	h := append([]byte{}, sig...)
	h = append(h, 0x21, 0x11) // v2 PROXY, TCP over IPv4
	h = binary.BigEndian.AppendUint16(h, uint16(12+len(tlvs)))
	h = append(h, 203, 0, 113, 7) // src
	h = append(h, 10, 0, 0, 5)    // dst
	h = binary.BigEndian.AppendUint16(h, 51234)
	h = binary.BigEndian.AppendUint16(h, 443)
	h = append(h, tlvs...)
	if aws {
		at := 16 + 12 + 3 // the CRC32C value
		c := crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli))
		binary.BigEndian.PutUint32(h[at:], c)
	}
	return h
}

func header(kind string) []byte {
	switch kind {
	case "none":
		return nil
	case "v1":
		return []byte("PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n")
	case "v2":
		return v2Header(false)
	case "v2aws":
		return v2Header(true)
	}
	fmt.Fprintf(os.Stderr, "unknown -header %q\n", kind)
	os.Exit(2)
	return nil
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// emit prints the result with the client's own CPU time, so that a client-bound run shows.
func emit(v map[string]any) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	v["clientCpu"] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return float64(sorted[i].Microseconds())
}

func short(addr string, hdr []byte, size, workers int, d time.Duration) {
	msg := append(append([]byte{}, hdr...), payload(size)...)
	var wg sync.WaitGroup
	var errs int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, workers)
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, size+1)
			var l []time.Duration
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				err := func() error {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						return err
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(msg); err != nil {
						return err
					}
					// The reply, then the server's FIN: the server closes first, so
					// TIME_WAIT stays on its side and client ports do not run out.
					got := 0
					for {
						n, err := c.Read(buf[got:])
						got += n
						if err == io.EOF {
							break
						}
						if err != nil {
							return err
						}
						if got > size {
							return fmt.Errorf("reply longer than %d", size)
						}
					}
					if got != size {
						return fmt.Errorf("reply of %d bytes, want %d", got, size)
					}
					return nil
				}()
				if err != nil {
					if atomic.AddInt64(&errs, 1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				l = append(l, time.Since(t0))
			}
			lats[w] = l
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	fe, _ := firstErr.Load().(string)
	emit(map[string]any{
		"mode": "short", "conns": len(all), "errors": errs, "firstError": fe,
		"seconds": el.Seconds(), "rate": float64(len(all)) / el.Seconds(),
		"p50us": pct(all, 0.5), "p90us": pct(all, 0.9), "p99us": pct(all, 0.99),
	})
}

func idle(addr string, hdr []byte, extra, n int) {
	msg := append(append([]byte{}, hdr...), payload(extra)...)
	conns := make([]net.Conn, 0, n)
	errs := 0
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			errs++
			continue
		}
		if _, err := c.Write(msg); err != nil {
			errs++
			c.Close()
			continue
		}
		conns = append(conns, c)
	}
	emit(map[string]any{"mode": "idle", "ready": true, "conns": len(conns), "errors": errs})
	bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range conns {
		c.Close()
	}
}

func bulk(addr string, hdr []byte, workers int, d time.Duration) {
	chunk := payload(64 << 10)
	var wg sync.WaitGroup
	var total, errs int64
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				atomic.AddInt64(&errs, 1)
				return
			}
			defer c.Close()
			if len(hdr) > 0 {
				if _, err := c.Write(hdr); err != nil {
					atomic.AddInt64(&errs, 1)
					return
				}
			}
			var sent int64
			for time.Now().Before(deadline) {
				n, err := c.Write(chunk)
				sent += int64(n)
				if err != nil {
					atomic.AddInt64(&errs, 1)
					return
				}
			}
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c) // until the server has read it all and closed
			atomic.AddInt64(&total, sent)
		}()
	}
	wg.Wait()
	el := time.Since(start)
	emit(map[string]any{
		"mode": "bulk", "bytes": total, "errors": errs, "seconds": el.Seconds(),
		"rate": float64(total) / el.Seconds(),
	})
}

func main() {
	mode := flag.String("mode", "short", "short | idle | bulk")
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	hk := flag.String("header", "v2", "v1 | v2 | v2aws | none")
	c := flag.Int("c", 32, "workers (short) or connections (bulk)")
	d := flag.Float64("d", 3, "seconds (short, bulk)")
	size := flag.Int("size", 100, "request and reply size (short)")
	n := flag.Int("n", 2000, "connections (idle)")
	extra := flag.Int("payload", 0, "payload bytes in the header's write (idle)")
	flag.Parse()
	hdr := header(*hk)
	dur := time.Duration(*d * float64(time.Second))
	switch *mode {
	case "short":
		short(*addr, hdr, *size, *c, dur)
	case "idle":
		idle(*addr, hdr, *extra, *n)
	case "bulk":
		bulk(*addr, hdr, *c, dur)
	default:
		fmt.Fprintf(os.Stderr, "unknown -mode %q\n", *mode)
		os.Exit(2)
	}
}
