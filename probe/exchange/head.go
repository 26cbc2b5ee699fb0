package exchange

import (
	"bytes"
	"strings"
)

// The request head is the first bytes of the request payload as they
// crossed the wire. On a plaintext HTTP/1.x leg it holds the request line
// and maybe some headers; on an mTLS leg it holds a TLS record header.

// RequestLine is the parsed (possibly truncated) HTTP/1.x request line.
type RequestLine struct {
	Method string
	Target string // path and query; a prefix of it when Truncated
	Proto  string // "HTTP/1.1"; empty when Truncated
	// Truncated: the head ended before the line did.
	Truncated bool
}

var methods = []string{"GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}

// ParseRequestLine parses the HTTP/1.x request line at the start of head.
func ParseRequestLine(head []byte) (RequestLine, bool) {
	sp := bytes.IndexByte(head, ' ')
	if sp <= 0 {
		return RequestLine{}, false
	}
	method := string(head[:sp])
	known := false
	for _, m := range methods {
		if method == m {
			known = true
			break
		}
	}
	if !known {
		return RequestLine{}, false
	}
	rest := head[sp+1:]
	eol := bytes.Index(rest, []byte("\r\n"))
	if eol < 0 {
		// Truncated: everything up to the next space (or the end) is
		// a prefix of the target.
		target := rest
		truncated := true
		if i := bytes.IndexByte(rest, ' '); i >= 0 {
			target = rest[:i]
		}
		return RequestLine{Method: method, Target: string(target), Truncated: truncated}, true
	}
	line := rest[:eol]
	i := bytes.LastIndexByte(line, ' ')
	if i <= 0 || !bytes.HasPrefix(line[i+1:], []byte("HTTP/1.")) {
		return RequestLine{}, false
	}
	return RequestLine{Method: method, Target: string(line[:i]), Proto: string(line[i+1:])}, true
}

// headerValue returns the value of the first header called name (case
// insensitive) if its whole line lies inside head, as a part of head. It
// runs for every exchange with a head (probe/pairing looks for the request
// ID): it walks the lines once, by their line feeds, and compares a name
// only where the line has a colon just after as many bytes.
func headerValue(head []byte, name string) ([]byte, bool) {
	nl := bytes.IndexByte(head, '\n')
	if nl <= 1 || head[nl-1] != '\r' {
		return nil, false // no request line
	}
	rest := head[nl+1:]
	for {
		nl = bytes.IndexByte(rest, '\n')
		if nl <= 0 || rest[nl-1] != '\r' {
			return nil, false // truncated line (or a bare LF)
		}
		line := rest[:nl-1]
		if len(line) == 0 {
			return nil, false // the empty line ending the headers
		}
		rest = rest[nl+1:]
		if len(line) > len(name) && line[len(name)] == ':' && strings.EqualFold(string(line[:len(name)]), name) {
			return bytes.TrimSpace(line[len(name)+1:]), true
		}
	}
}

// RequestID returns the x-request-id header (set by Envoy and propagated by
// applications that trace) when the head contains it whole.
func RequestID(head []byte) (string, bool) {
	id, ok := RequestIDBytes(head)
	return string(id), ok
}

// RequestIDBytes is RequestID without the copy: the ID is a part of head,
// for a caller that only compares or hashes it (probe/pairing, per
// request).
func RequestIDBytes(head []byte) ([]byte, bool) {
	id, ok := headerValue(head, "x-request-id")
	if !ok || len(id) == 0 {
		return nil, false
	}
	return id, true
}

// IsTLSHandshake reports whether head starts with a TLS handshake record
// (content type 22, version 3.x): the exchange is a TLS handshake, not a
// request.
func IsTLSHandshake(head []byte) bool {
	return len(head) >= 3 && head[0] == 0x16 && head[1] == 0x03 && head[2] <= 0x04
}
