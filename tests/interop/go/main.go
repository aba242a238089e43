// Command ppinterop puts Debian's go-proxyproto 0.4.2 on the other end of the Deno
// adapter's interop tests (tests/deno/interop_go.test.ts). Every result is one JSON object
// a line on stdout.
//
//	ppinterop send <host:port>
//	    For each case below: connects, writes the header with Header.WriteTo, then
//	    "ping <case>\n", closes its write side, reads the reply to EOF and prints
//	    {"case", "header" (hex of what was written), "reply"} or {"case", "error"}.
//	ppinterop listen
//	    Listens on 127.0.0.1:0 through proxyproto.Listener with the REQUIRE policy, prints
//	    {"port"}, then for each connection reads one line of payload and prints what the
//	    library saw: {"remote", "local", "version", "command", "transport", "tlvs",
//	    "payload"} (then writes "echo:<payload>" back), or {"error"} when it refused the
//	    header. Runs until killed.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

var (
	stdout   = json.NewEncoder(os.Stdout)
	stdoutMu sync.Mutex
)

func emit(v interface{}) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	if err := stdout.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "ppinterop:", err)
		os.Exit(1)
	}
}

func tcp(ip string, port int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.ParseIP(ip), Port: port}
}

type sendCase struct {
	name   string
	header *proxyproto.Header
	tlvs   []proxyproto.TLV
}

func sendCases() []sendCase {
	h := func(version byte, transport proxyproto.AddressFamilyAndProtocol, src, dst string) *proxyproto.Header {
		return &proxyproto.Header{
			Version:           version,
			Command:           proxyproto.PROXY,
			TransportProtocol: transport,
			SourceAddr:        tcp(src, 1111),
			DestinationAddr:   tcp(dst, 2222),
		}
	}
	return []sendCase{
		{"v2-tcp4-tlvs", h(2, proxyproto.TCPv4, "192.0.2.1", "192.0.2.2"), []proxyproto.TLV{
			{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("example.com")},
			{Type: 0xF0, Value: []byte("go")},
		}},
		{"v1-tcp4", h(1, proxyproto.TCPv4, "192.0.2.1", "192.0.2.2"), nil},
		{"v2-tcp6", h(2, proxyproto.TCPv6, "2001:db8::1", "2001:db8::2"), nil},
		{"v1-tcp6", h(1, proxyproto.TCPv6, "2001:db8::1", "2001:db8::2"), nil},
		// net.IP.String prints a v4-mapped address as dotted IPv4, so this line reads
		// "PROXY TCP6 192.0.2.1 192.0.2.2 ...", which the spec does not allow.
		{"v1-tcp6-mapped", h(1, proxyproto.TCPv6, "::ffff:192.0.2.1", "::ffff:192.0.2.2"), nil},
	}
}

func send(target string) {
	for _, c := range sendCases() {
		if c.tlvs != nil {
			if err := c.header.SetTLVs(c.tlvs); err != nil {
				emit(map[string]string{"case": c.name, "error": err.Error()})
				continue
			}
		}
		wire, err := c.header.Format()
		if err != nil {
			emit(map[string]string{"case": c.name, "error": err.Error()})
			continue
		}
		reply, err := sendOne(target, c)
		out := map[string]string{"case": c.name, "header": hex.EncodeToString(wire), "reply": reply}
		if err != nil {
			out["error"] = err.Error()
		}
		emit(out)
	}
}

func sendOne(target string, c sendCase) (string, error) {
	conn, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.header.WriteTo(conn); err != nil {
		return "", err
	}
	if _, err := io.WriteString(conn, "ping "+c.name+"\n"); err != nil {
		return "", err
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(conn)
	return string(reply), err
}

type tlv struct {
	Type  int    `json:"type"`
	Value string `json:"value"` // hex
}

func listen() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ppinterop:", err)
		os.Exit(1)
	}
	ln := &proxyproto.Listener{
		Listener:          inner,
		Policy:            func(net.Addr) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil },
		ReadHeaderTimeout: 5 * time.Second,
	}
	emit(map[string]int{"port": inner.Addr().(*net.TCPAddr).Port})
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ppinterop:", err)
			os.Exit(1)
		}
		go serve(conn.(*proxyproto.Conn))
	}
}

func serve(conn *proxyproto.Conn) {
	defer conn.Close()
	// The first Read parses the header; an error here is the library refusing it.
	payload, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		emit(map[string]string{"error": err.Error()})
		return
	}
	h := conn.ProxyHeader()
	out := map[string]interface{}{
		"remote":  addrString(conn.RemoteAddr()),
		"local":   addrString(conn.LocalAddr()),
		"payload": payload,
	}
	if h != nil {
		out["version"] = h.Version
		out["command"] = map[bool]string{true: "LOCAL", false: "PROXY"}[h.Command.IsLocal()]
		out["transport"] = int(h.TransportProtocol)
		tlvs, err := h.TLVs()
		if err != nil {
			out["tlvError"] = err.Error()
		}
		list := []tlv{}
		for _, t := range tlvs {
			list = append(list, tlv{int(t.Type), hex.EncodeToString(t.Value)})
		}
		out["tlvs"] = list
	}
	emit(out)
	_, _ = io.WriteString(conn, "echo:"+payload)
}

// addrString is net.Addr.String, except that it prints "<nil>" for a nil address: 0.4.2
// accepts a v2 transport nibble of 3 and then reports nil addresses.
func addrString(a net.Addr) string {
	if a == nil {
		return "<nil>"
	}
	return a.String()
}

func main() {
	switch {
	case len(os.Args) == 3 && os.Args[1] == "send":
		send(os.Args[2])
	case len(os.Args) == 2 && os.Args[1] == "listen":
		listen()
	default:
		fmt.Fprintln(os.Stderr, "usage: ppinterop send <host:port> | ppinterop listen")
		os.Exit(2)
	}
}
