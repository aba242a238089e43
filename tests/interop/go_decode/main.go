// Command ppdecode decodes PROXY protocol headers with Debian's go-proxyproto 0.4.2, for
// the differential test tests/deno/differential_go.test.ts.
//
// It reads one hex-encoded input a line on stdin and writes one JSON object a line on
// stdout, in the same order; output is flushed whenever stdin has nothing more buffered, so
// a caller can stream inputs in chunks. Each input is decoded as a proxyproto.Conn would:
// proxyproto.Read on a bufio.Reader of the default size (4096 bytes) over the bytes.
//
//	{"ok":true, "version", "command" ("PROXY"/"LOCAL"), "transport" (the family/transport
//	 byte), "source"/"destination" ({"ip" (hex of net.IP.To16()), "port"}, {"unix" (hex of
//	 the path bytes), "net"}, or {"nil":true} for a nil net.Addr; absent when the header has
//	 none), "length" (bytes consumed: where the reader stands after the header),
//	 "tlvs" (header.TLVs(), i.e. SplitTLVs: [{"type","value" (hex)}]) or "tlvError",
//	 "ssl"/"aws"/"azure" (what tlvparse finds in those TLVs, when it finds something)}
//	{"ok":false, "error": err.Error(), "kind": "eof" | "error"}
//
// "kind" is "eof" when the input ran out before go-proxyproto could decide: it asked the
// reader for bytes past the end, or (v1) it stopped because nothing more was buffered.
// A header whose length exceeds the bufio buffer fails whatever follows, so that is an
// "error" even at the end of the input.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// source is a bytes.Reader that remembers whether it was asked for bytes past its end.
type source struct {
	*bytes.Reader
	hitEnd bool
}

func (s *source) Read(p []byte) (int, error) {
	n, err := s.Reader.Read(p)
	if err == io.EOF {
		s.hitEnd = true
	}
	return n, err
}

type addr struct {
	IP   *string `json:"ip,omitempty"`
	Port *int    `json:"port,omitempty"`
	Unix *string `json:"unix,omitempty"`
	Net  string  `json:"net,omitempty"`
	Nil  bool    `json:"nil,omitempty"`
}

type tlv struct {
	Type  int    `json:"type"`
	Value string `json:"value"`
}

type ssl struct {
	Client  int    `json:"client"`
	Verify  uint32 `json:"verify"`
	Version string `json:"version,omitempty"`
	CN      string `json:"cn,omitempty"`
	TLVs    []tlv  `json:"tlvs"`
}

type result struct {
	OK          bool    `json:"ok"`
	Error       string  `json:"error,omitempty"`
	Kind        string  `json:"kind,omitempty"`
	Version     int     `json:"version,omitempty"`
	Command     string  `json:"command,omitempty"`
	Transport   *int    `json:"transport,omitempty"`
	Source      *addr   `json:"source,omitempty"`
	Destination *addr   `json:"destination,omitempty"`
	Length      int     `json:"length,omitempty"`
	TLVs        []tlv   `json:"tlvs,omitempty"`
	TLVError    string  `json:"tlvError,omitempty"`
	SSL         *ssl    `json:"ssl,omitempty"`
	AWS         *string `json:"aws,omitempty"`
	Azure       *uint32 `json:"azure,omitempty"`
}

func toAddr(a net.Addr) *addr {
	switch a := a.(type) {
	case nil:
		return nil
	case *net.TCPAddr:
		return ipAddr(a.IP, a.Port)
	case *net.UDPAddr:
		return ipAddr(a.IP, a.Port)
	case *net.UnixAddr:
		path := hex.EncodeToString([]byte(a.Name))
		return &addr{Unix: &path, Net: a.Net}
	default:
		return &addr{Net: fmt.Sprintf("%T", a)}
	}
}

func ipAddr(ip net.IP, port int) *addr {
	out := &addr{Port: &port}
	if ip16 := ip.To16(); ip16 != nil {
		h := hex.EncodeToString(ip16)
		out.IP = &h
	}
	return out
}

func tlvList(tlvs []proxyproto.TLV) []tlv {
	out := make([]tlv, 0, len(tlvs))
	for _, t := range tlvs {
		out = append(out, tlv{int(t.Type), hex.EncodeToString(t.Value)})
	}
	return out
}

// bufSize is bufio.NewReader's default, the size proxyproto.NewConn reads through.
const bufSize = 4096

func decode(input []byte) (out result) {
	defer func() {
		if p := recover(); p != nil {
			out = result{Error: fmt.Sprint("panic: ", p), Kind: "panic"}
		}
	}()
	src := &source{Reader: bytes.NewReader(input)}
	br := bufio.NewReaderSize(src, bufSize)
	h, err := proxyproto.Read(br)
	if err != nil {
		out.Error = err.Error()
		out.Kind = "error"
		if src.hitEnd && !overBuffer(input) {
			out.Kind = "eof"
		}
		// The v1 reader stops when nothing more is buffered, before asking for more.
		if err == proxyproto.ErrCantReadVersion1Header && src.Len() == 0 && br.Buffered() == 0 {
			out.Kind = "eof"
		}
		return out
	}
	out.OK = true
	out.Version = int(h.Version)
	out.Command = map[bool]string{true: "LOCAL", false: "PROXY"}[h.Command.IsLocal()]
	if !h.Command.IsLocal() && !h.Command.IsProxy() {
		out.Command = fmt.Sprintf("0x%02x", byte(h.Command))
	}
	transport := int(h.TransportProtocol)
	out.Transport = &transport
	out.Source = toAddr(h.SourceAddr)
	out.Destination = toAddr(h.DestinationAddr)
	// A typed nil (*net.TCPAddr)(nil) cannot come out of Read; an untyped nil interface
	// comes out for families without addresses, and for transports that are neither
	// stream nor datagram (newIPAddr returns nil): mark the latter.
	if h.SourceAddr == nil && h.TransportProtocol != proxyproto.UNSPEC &&
		(h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		out.Source = &addr{Nil: true}
		out.Destination = &addr{Nil: true}
	}
	out.Length = len(input) - src.Len() - br.Buffered()
	tlvs, err := h.TLVs()
	if err != nil {
		out.TLVError = err.Error()
		return out
	}
	out.TLVs = tlvList(tlvs)
	if s, ok := tlvparse.FindSSL(tlvs); ok {
		v, _ := s.SSLVersion()
		cn, _ := s.ClientCN()
		out.SSL = &ssl{Client: int(s.Client), Verify: s.Verify, Version: v, CN: cn, TLVs: tlvList(s.TLV)}
	}
	if id := tlvparse.FindAWSVPCEndpointID(tlvs); id != "" {
		out.AWS = &id
	}
	if id, ok := tlvparse.FindAzurePrivateEndpointLinkID(tlvs); ok {
		out.Azure = &id
	}
	return out
}

// overBuffer: a v2 header whose length field exceeds the bufio buffer, which Peek refuses
// with ErrBufferFull (reported as ErrInvalidLength) however many bytes follow.
func overBuffer(input []byte) bool {
	return len(input) >= 16 && bytes.Equal(input[:12], proxyproto.SIGV2) &&
		int(binary.BigEndian.Uint16(input[14:16])) > bufSize
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	enc := json.NewEncoder(w)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			input := make([]byte, hex.DecodedLen(len(line)))
			var out result
			if _, herr := hex.Decode(input, line); herr != nil {
				out = result{Error: "bad hex: " + herr.Error(), Kind: "input"}
			} else {
				out = decode(input)
			}
			if eerr := enc.Encode(out); eerr != nil {
				fmt.Fprintln(os.Stderr, "ppdecode:", eerr)
				os.Exit(1)
			}
		}
		if err != nil || in.Buffered() == 0 {
			if ferr := w.Flush(); ferr != nil {
				fmt.Fprintln(os.Stderr, "ppdecode:", ferr)
				os.Exit(1)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			fmt.Fprintln(os.Stderr, "ppdecode:", err)
			os.Exit(1)
		}
	}
}
