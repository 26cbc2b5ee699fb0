package echo

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestServiceTimeAndSize(t *testing.T) {
	s := &Server{ServiceTime: 2 * time.Millisecond, PayloadSize: 100}
	srv := httptest.NewServer(s)
	defer srv.Close()
	start := time.Now()
	body, err := Get(context.Background(), srv.URL+"/x", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 2*time.Millisecond {
		t.Fatalf("answered in %s, before the 2ms service time", el)
	}
	if len(body) != 100 || strings.Trim(string(body), "x") != "" {
		t.Fatalf("body %q", body)
	}
	body, err = Get(context.Background(), srv.URL+"/y?size=0&service_time=0s", time.Second)
	if err != nil || string(body) != "GET /y\n" {
		t.Fatalf("body %q err %v", body, err)
	}
	if s.Requests() != 2 {
		t.Fatalf("requests = %d", s.Requests())
	}
}

func TestGetGivesUp(t *testing.T) {
	srv := httptest.NewServer(&Server{})
	url := srv.URL
	srv.Close() // nothing listens any more
	_, err := Get(context.Background(), url, 600*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("err = %v", err)
	}
}
