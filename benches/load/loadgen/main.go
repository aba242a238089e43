// Command loadgen is the client and the upstream of the load test (benches/load/run.mjs):
// standard library only.
//
// Modes:
//
//	client    opens -n connections to -addr, all of them at once (-dial dialers), and holds
//	          them until every one is established; prints {"event":"established"} and waits
//	          for a line on stdin. Then every connection sends its own PROXY header (v1 TCP4,
//	          v2 TCP4, v2 TCP6, v1 TCP6 in turn; source 10.a.b.c or 2001:db8::a:b, port from
//	          its index), reads the answer ("ADDRESS PORT\n") and checks that it names its own
//	          source; prints {"event":"answered"} and waits for a line. Then all close; prints
//	          {"event":"closed"}. Errors are counted, never retried.
//	upstream  listens on -addr; for each connection reads the gateway's PROXY header (v2 or
//	          v1), answers "ADDRESS PORT\n" with its source, then waits for the end and
//	          closes. Prints {"event":"listening","addr":...}.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

func emit(v map[string]any) {
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
}

// source is connection i's declared client: its address (as text, canonical) and port.
func source(i int) (ip net.IP, port int, v6 bool) {
	port = 1024 + i%64000
	if kind := i % 4; kind == 2 || kind == 3 {
		ip = net.ParseIP(fmt.Sprintf("2001:db8::%x:%x", (i>>16)&0xffff, i&0xffff))
		return ip, port, true
	}
	return net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).To4(), port, false
}

// header is connection i's PROXY header: v1 for kinds 0 and 3, v2 for 1 and 2.
func header(i int) []byte {
	ip, port, v6 := source(i)
	kind := i % 4
	if kind == 0 || kind == 3 {
		if v6 {
			return []byte(fmt.Sprintf("PROXY TCP6 %s 2001:db8::ffff %d 443\r\n", ip, port))
		}
		return []byte(fmt.Sprintf("PROXY TCP4 %s 10.255.0.1 %d 443\r\n", ip, port))
	}
	h := append([]byte{}, sig...)
	if v6 {
		h = append(h, 0x21, 0x21)
		h = binary.BigEndian.AppendUint16(h, 36)
		h = append(h, ip.To16()...)
		h = append(h, net.ParseIP("2001:db8::ffff").To16()...)
	} else {
		h = append(h, 0x21, 0x11)
		h = binary.BigEndian.AppendUint16(h, 12)
		h = append(h, ip.To4()...)
		h = append(h, 10, 255, 0, 1)
	}
	h = binary.BigEndian.AppendUint16(h, uint16(port))
	return binary.BigEndian.AppendUint16(h, 443)
}

func waitLine(in *bufio.Reader) {
	if _, err := in.ReadString('\n'); err != nil && err != io.EOF {
		panic(err)
	}
}

type tally struct {
	mu    sync.Mutex
	n     int
	kinds map[string]int
	first string
}

func (t *tally) add(kind string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	if t.kinds == nil {
		t.kinds = map[string]int{}
	}
	t.kinds[kind]++
	if t.first == "" && err != nil {
		t.first = err.Error()
	}
}

func client(addr string, n, dialers int, timeout time.Duration) {
	in := bufio.NewReader(os.Stdin)
	conns := make([]net.Conn, n)
	var errs tally
	var next int64 = -1
	var wg sync.WaitGroup
	t0 := time.Now()
	d := net.Dialer{Timeout: timeout}
	for w := 0; w < dialers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					errs.add("dial", err)
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	established := time.Since(t0)
	emit(map[string]any{"event": "established", "n": n, "ms": established.Milliseconds(),
		"errors": errs.n, "kinds": errs.kinds, "first": errs.first})
	waitLine(in)

	t1 := time.Now()
	var answered int64
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(timeout))
			if _, err := c.Write(header(i)); err != nil {
				errs.add("write", err)
				return
			}
			line, err := bufio.NewReaderSize(c, 128).ReadString('\n')
			if err != nil {
				errs.add("read", err)
				return
			}
			ip, port, _ := source(i)
			want := fmt.Sprintf("%s %d\n", ip, port)
			if line != want {
				errs.add("wrong", fmt.Errorf("connection %d: got %q, want %q", i, line, want))
				return
			}
			atomic.AddInt64(&answered, 1)
		}(i, c)
	}
	wg.Wait()
	emit(map[string]any{"event": "answered", "ms": time.Since(t1).Milliseconds(),
		"answered": answered, "errors": errs.n, "kinds": errs.kinds, "first": errs.first})
	waitLine(in)

	t2 := time.Now()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	emit(map[string]any{"event": "closed", "ms": time.Since(t2).Milliseconds(), "errors": errs.n})
}

// readHeader reads one PROXY header (v2, or a v1 line) and returns its source.
func readHeader(r *bufio.Reader) (string, error) {
	head, err := r.Peek(16)
	if err != nil {
		return "", err
	}
	if bytes.Equal(head[:12], sig) {
		length := int(binary.BigEndian.Uint16(head[14:16]))
		block := make([]byte, 16+length)
		if _, err := io.ReadFull(r, block); err != nil {
			return "", err
		}
		body := block[16:]
		switch block[13] {
		case 0x11:
			return fmt.Sprintf("%s %d", net.IP(body[0:4]), binary.BigEndian.Uint16(body[8:10])), nil
		case 0x21:
			return fmt.Sprintf("%s %d", net.IP(body[0:16]), binary.BigEndian.Uint16(body[32:34])), nil
		}
		return "", fmt.Errorf("family 0x%02x", block[13])
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	f := bytes.Fields([]byte(line))
	if len(f) != 6 || string(f[0]) != "PROXY" {
		return "", errors.New("not a PROXY line")
	}
	port, _ := strconv.Atoi(string(f[4]))
	return fmt.Sprintf("%s %d", net.ParseIP(string(f[2])), port), nil
}

func upstream(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		panic(err)
	}
	emit(map[string]any{"event": "listening", "addr": ln.Addr().String()})
	for {
		c, err := ln.Accept()
		if err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			r := bufio.NewReaderSize(c, 256)
			src, err := readHeader(r)
			if err != nil {
				fmt.Fprintf(os.Stderr, "upstream: %v\n", err)
				return
			}
			if _, err := c.Write([]byte(src + "\n")); err != nil {
				return
			}
			io.Copy(io.Discard, r)
		}(c)
	}
}

func main() {
	mode := flag.String("mode", "client", "client | upstream")
	addr := flag.String("addr", "127.0.0.1:0", "the server (client) or where to listen (upstream)")
	n := flag.Int("n", 10000, "connections (client)")
	dialers := flag.Int("dial", 256, "concurrent dialers (client)")
	timeout := flag.Duration("timeout", 60*time.Second, "per connect, and per answer (client)")
	flag.Parse()
	switch *mode {
	case "client":
		client(*addr, *n, *dialers, *timeout)
	case "upstream":
		upstream(*addr)
	default:
		fmt.Fprintf(os.Stderr, "unknown -mode %q\n", *mode)
		os.Exit(2)
	}
}
