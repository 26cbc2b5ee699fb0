package exchange

import (
	"strings"
	"testing"
)

func TestParseRequestLine(t *testing.T) {
	cases := []struct {
		head string
		want RequestLine
		ok   bool
	}{
		{"GET /api/v1/items?x=1 HTTP/1.1\r\nHost: a\r\n", RequestLine{Method: "GET", Target: "/api/v1/items?x=1", Proto: "HTTP/1.1"}, true},
		{"POST /upload HTTP/1.0\r\n", RequestLine{Method: "POST", Target: "/upload", Proto: "HTTP/1.0"}, true},
		{"GET /a-very-long-path-that-does-not-fit", RequestLine{Method: "GET", Target: "/a-very-long-path-that-does-not-fit", Truncated: true}, true},
		{"GET /x HTT", RequestLine{Method: "GET", Target: "/x", Truncated: true}, true},
		{"\x16\x03\x01\x02\x00\x01", RequestLine{}, false},
		{"FOO / HTTP/1.1\r\n", RequestLine{}, false},
		{"GET / SPDY/3\r\n", RequestLine{}, false},
		{"", RequestLine{}, false},
	}
	for _, c := range cases {
		got, ok := ParseRequestLine([]byte(c.head))
		if ok != c.ok || got != c.want {
			t.Errorf("%q: got %+v %v, want %+v %v", c.head, got, ok, c.want, c.ok)
		}
	}
}

func TestRequestID(t *testing.T) {
	id, ok := RequestID([]byte("GET / HTTP/1.1\r\nX-Request-Id: 7f3a\r\nHost: a\r\n"))
	if !ok || id != "7f3a" {
		t.Fatalf("got %q %v", id, ok)
	}
	if _, ok := RequestID([]byte("GET / HTTP/1.1\r\nx-request-id: 7f3a")); ok {
		t.Fatal("a header cut by the end of the head must not be used")
	}
	if _, ok := RequestID([]byte("GET / HTTP/1.1\r\n\r\nx-request-id: 1\r\n")); ok {
		t.Fatal("a header after the end of the headers must not be used")
	}
}

func TestIsTLSHandshake(t *testing.T) {
	if !IsTLSHandshake([]byte{0x16, 0x03, 0x01, 0x02, 0x00}) {
		t.Fatal("ClientHello record not recognised")
	}
	if IsTLSHandshake([]byte("GET / HTTP/1.1")) || IsTLSHandshake([]byte{0x17, 0x03, 0x03}) {
		t.Fatal("non-handshake recognised as handshake")
	}
}

// requestIDReference is RequestID written the plain way: split the head
// into CRLF-terminated lines, skip the request line, stop at the empty
// line, at a truncated line or at a line with a bare LF.
func requestIDReference(head []byte) (string, bool) {
	lines := strings.Split(string(head), "\r\n")
	lines = lines[:len(lines)-1] // the last piece has no CRLF: truncated
	for i, line := range lines {
		if line == "" || strings.Contains(line, "\n") {
			return "", false
		}
		if i == 0 {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(name, "x-request-id") {
			value = strings.TrimSpace(value)
			return value, value != ""
		}
	}
	return "", false
}

func FuzzRequestID(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: 7f3a\r\n\r\n",
		"GET / HTTP/1.1\r\nx-request-id:\t id \r\n",
		"GET / HTTP/1.1\r\nx-request-id: 7f3a",
		"GET / HTTP/1.1\r\n\r\nx-request-id: 1\r\n",
		"GET / HTTP/1.1\nx-request-id: 1\r\n",
		"GET / HTTP/1.1\r\nx-request-idx: 1\r\nx-request-id : 2\r\nX-REQUEST-ID:3\r\n",
		"\r\nx-request-id: 1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		got, ok := RequestID(head)
		want, wantOK := requestIDReference(head)
		if got != want || ok != wantOK {
			t.Fatalf("RequestID(%q) = %q %v, want %q %v", head, got, ok, want, wantOK)
		}
	})
}
