package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

func TestCreateDoDialDelete(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	name := fmt.Sprintf("kml-test-%d", os.Getpid())
	n := Node{Name: name, Bridge: "br-test", CIDR: "10.99.0.2/24", Gateway: "10.99.0.1"}
	if err := Create(n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Delete(name) })
	if err := Create(n); err == nil {
		t.Fatal("creating an existing namespace must fail")
	}
	if err := Sysctl(name, map[string]string{"net.ipv4.ip_forward": "1"}); err != nil {
		t.Fatal(err)
	}
	// A listener inside the namespace, on the node address, reached with Dialer from the host.
	var l net.Listener
	if err := Do(Path(name), func() error {
		var err error
		l, err = net.Listen("tcp", "10.99.0.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("inside"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dialer(Path(name))(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := c.Read(buf); err != nil || string(buf) != "inside" {
		t.Fatalf("read %q %v", buf, err)
	}
	c.Close()
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatal("namespace still exists after Delete")
	}
	if err := Delete(name); err != nil {
		t.Fatalf("deleting a missing namespace: %v", err)
	}
}
