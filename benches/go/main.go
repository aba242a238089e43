// Command proxyprotobench times Debian's go-proxyproto 0.4.2 decoding and
// encoding the same wire bytes as the JS benchmarks, and prints one JSON
// object per case on stdout.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

const (
	library = "go-proxyproto 0.4.2"
	// sig is the 12-byte v2 signature.
	sig = "0d0a0d0a000d0a515549540a"
	// target is how long each timed run should take.
	target = 750 * time.Millisecond
)

type result struct {
	Runtime    string   `json:"runtime"`
	Library    string   `json:"library"`
	Case       string   `json:"case"`
	NsPerOp    *float64 `json:"ns_per_op,omitempty"`
	Iterations *int     `json:"iterations,omitempty"`
	Error      string   `json:"error,omitempty"`
	Note       string   `json:"note,omitempty"`
}

// sink keeps results alive so the compiler cannot drop the work.
var sink int

func mustHex(parts ...string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.Join(parts, ""), " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func asciiHex(s string) string { return hex.EncodeToString([]byte(s)) }

// decoder reuses one bytes.Reader and one bufio.Reader so no 4 KiB buffer is
// allocated per operation.
type decoder struct {
	rd *bytes.Reader
	br *bufio.Reader
}

func newDecoder() *decoder {
	rd := bytes.NewReader(nil)
	return &decoder{rd: rd, br: bufio.NewReader(rd)}
}

func (d *decoder) read(buf []byte) (*proxyproto.Header, error) {
	d.rd.Reset(buf)
	d.br.Reset(d.rd)
	return proxyproto.Read(d.br)
}

// consume does what the JS decoder hands back: address text and numeric
// ports for both ends, plus the split TLV list when tlvs is set.
func consume(h *proxyproto.Header, tlvs bool) error {
	src, dst, ok := h.IPs()
	if !ok {
		return fmt.Errorf("no IP addresses in header")
	}
	sp, dp, _ := h.Ports()
	sink += len(src.String()) + len(dst.String()) + sp + dp
	if tlvs {
		list, err := h.TLVs()
		if err != nil {
			return err
		}
		sink += len(list)
	}
	return nil
}

type benchCase struct {
	name string
	note string
	// check runs once before timing; a non-nil rejected error means the
	// library refused the input, a non-nil mismatch error is fatal.
	check func() (rejected error, mismatch error)
	op    func()
}

func decodeCase(name, note string, wire []byte, wantSrc, wantDst string, wantTLVs []proxyproto.PP2Type) benchCase {
	d := newDecoder()
	tlvs := wantTLVs != nil
	return benchCase{
		name: name,
		note: note,
		check: func() (error, error) {
			h, err := d.read(wire)
			if err != nil {
				return err, nil
			}
			if err := consume(h, tlvs); err != nil {
				return err, nil
			}
			if got := h.SourceAddr.String(); got != wantSrc {
				return nil, fmt.Errorf("source %q, want %q", got, wantSrc)
			}
			if got := h.DestinationAddr.String(); got != wantDst {
				return nil, fmt.Errorf("destination %q, want %q", got, wantDst)
			}
			if d.br.Buffered() != 0 {
				return nil, fmt.Errorf("%d bytes left unread after the header", d.br.Buffered())
			}
			if tlvs {
				list, _ := h.TLVs()
				if len(list) != len(wantTLVs) {
					return nil, fmt.Errorf("%d TLVs, want %d", len(list), len(wantTLVs))
				}
				for i, t := range list {
					if t.Type != wantTLVs[i] {
						return nil, fmt.Errorf("TLV %d type 0x%02x, want 0x%02x", i, byte(t.Type), byte(wantTLVs[i]))
					}
				}
			}
			return nil, nil
		},
		op: func() {
			h, err := d.read(wire)
			if err != nil {
				panic(err)
			}
			if err := consume(h, tlvs); err != nil {
				panic(err)
			}
		},
	}
}

func encodeCase(name string, h *proxyproto.Header, want []byte) benchCase {
	return benchCase{
		name: name,
		check: func() (error, error) {
			b, err := h.Format()
			if err != nil {
				return err, nil
			}
			if !bytes.Equal(b, want) {
				return nil, fmt.Errorf("encoded %x, want %x", b, want)
			}
			return nil, nil
		},
		op: func() {
			b, err := h.Format()
			if err != nil {
				panic(err)
			}
			sink += len(b) + int(b[len(b)-1])
		},
	}
}

func withNote(c benchCase, note string) benchCase {
	c.note = note
	return c
}

func run(op func(), n int) time.Duration {
	start := time.Now()
	for i := 0; i < n; i++ {
		op()
	}
	return time.Since(start)
}

// measure warms up, picks n so one run takes about target, then times it.
func measure(op func()) (float64, int) {
	run(op, 10000)
	n := 1000
	for {
		d := run(op, n)
		if d >= 100*time.Millisecond {
			n = int(float64(n) * float64(target) / float64(d))
			break
		}
		n *= 2
	}
	if n < 1 {
		n = 1
	}
	runtime.GC()
	d := run(op, n)
	return float64(d.Nanoseconds()) / float64(n), n
}

func tcp(ip string, port int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.ParseIP(ip), Port: port}
}

func main() {
	v1TCP4 := []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")
	v1TCP6 := []byte("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n")
	v2TCP4 := mustHex(sig, "21 11 000c ac1f0771 ac1f0a1f c8f2 0050")
	v2TLSv6 := mustHex(sig, "21 21 004f",
		"00000000000000000000ffff0a015b0e", "00000000000000000000ffff0a01019f", "f47c 01bb",
		"20 0028 01 00000000 21 0007", asciiHex("TLSv1.3"), "23 0016", asciiHex("TLS_AES_256_GCM_SHA384"))
	v2AWS := mustHex(sig, "21 11 0054 ac1f0771 ac1f0a1f c8f2 0050 03 0004 e8d6892d",
		"ea 0017 01", asciiHex("vpce-08d2bf15fac5001c9"), "04 0024", strings.Repeat("00", 36))
	// The encode cases write the same headers as benches/codec_bench.ts.
	v1TCP4Enc := []byte("PROXY TCP4 172.31.7.113 172.31.10.31 51442 80\r\n")
	v2TCP6Enc := mustHex(sig, "21 21 0069",
		"20010db8000000000000000000000001", "20010db8000000000000000000000002", "c738 01bb",
		"03 0004 1b897c41", "01 0002", asciiHex("h2"), "02 000b", asciiHex("example.com"),
		"20 0028 01 00000000 21 0007", asciiHex("TLSv1.3"), "23 0016", asciiHex("TLS_AES_256_GCM_SHA384"))
	v2TCP6EncTLVs, err := proxyproto.SplitTLVs(v2TCP6Enc[16+36:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	v2TCP6EncHeader := &proxyproto.Header{
		Version:           2,
		Command:           proxyproto.PROXY,
		TransportProtocol: proxyproto.TCPv6,
		SourceAddr:        tcp("2001:db8::1", 51000),
		DestinationAddr:   tcp("2001:db8::2", 443),
	}
	if err := v2TCP6EncHeader.SetTLVs(v2TCP6EncTLVs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(v2TLSv6) != 95 || len(v2AWS) != 100 || len(v2TCP6Enc) != 121 {
		fmt.Fprintf(os.Stderr, "vector lengths %d and %d, want 95 and 100\n", len(v2TLSv6), len(v2AWS))
		os.Exit(1)
	}

	cases := []benchCase{
		decodeCase("v1 TCP4 decode", "", v1TCP4, "192.168.0.1:56324", "192.168.0.11:443", nil),
		decodeCase("v1 TCP6 decode", "", v1TCP6, "[2001:db8::1]:51000", "[2001:db8::2]:443", nil),
		decodeCase("v2 TCP4 decode", "", v2TCP4, "172.31.7.113:51442", "172.31.10.31:80", nil),
		// Go's net.IP prints a v4-mapped IPv6 address as dotted quad.
		decodeCase("v2 TCP6+TLVs decode", "v4-mapped source printed as 10.1.91.14, not ::ffff:10.1.91.14; SSL sub-TLVs not parsed",
			v2TLSv6, "10.1.91.14:62588", "10.1.1.159:443",
			[]proxyproto.PP2Type{proxyproto.PP2_TYPE_SSL}),
		decodeCase("v2 TCP4 AWS decode (CRC32c)", "no CRC32c verification",
			v2AWS, "172.31.7.113:51442", "172.31.10.31:80",
			[]proxyproto.PP2Type{proxyproto.PP2_TYPE_CRC32C, 0xEA, proxyproto.PP2_TYPE_NOOP}),
		encodeCase("v2 TCP4 encode", &proxyproto.Header{
			Version:           2,
			Command:           proxyproto.PROXY,
			TransportProtocol: proxyproto.TCPv4,
			SourceAddr:        tcp("172.31.7.113", 51442),
			DestinationAddr:   tcp("172.31.10.31", 80),
		}, v2TCP4),
		encodeCase("v1 TCP4 encode", &proxyproto.Header{
			Version:           1,
			Command:           proxyproto.PROXY,
			TransportProtocol: proxyproto.TCPv4,
			SourceAddr:        tcp("172.31.7.113", 51442),
			DestinationAddr:   tcp("172.31.10.31", 80),
		}, v1TCP4Enc),
		// go-proxyproto writes TLVs as handed over: the CRC32c is precomputed, not computed.
		withNote(encodeCase("v2 TCP6+TLVs encode", v2TCP6EncHeader, v2TCP6Enc),
			"TLVs handed over raw, CRC32c precomputed (go-proxyproto computes none)"),
	}

	rt := "go " + strings.TrimPrefix(runtime.Version(), "go")
	enc := json.NewEncoder(os.Stdout)
	failed := false
	for _, c := range cases {
		r := result{Runtime: rt, Library: library, Case: c.name, Note: c.note}
		rejected, mismatch := c.check()
		switch {
		case mismatch != nil:
			fmt.Fprintf(os.Stderr, "%s: wrong result: %v\n", c.name, mismatch)
			failed = true
			continue
		case rejected != nil:
			r.Error = rejected.Error()
		default:
			ns, n := measure(c.op)
			ns = math.Round(ns*100) / 100
			r.NsPerOp, r.Iterations = &ns, &n
		}
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if failed || sink == 0 {
		os.Exit(1)
	}
}
