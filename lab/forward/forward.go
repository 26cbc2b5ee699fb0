// Package forward relays TCP connections from a loopback port on the host into the lab's network
// namespace. The host has no route into the lab (by design: the lab's traffic stays inside it),
// so kubectl and the plugin on the host reach the API server through this relay: they connect
// to 127.0.0.1, and the relay dials the API server from a socket created inside the lab's
// namespace. TLS passes through untouched.
package forward

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"sync"
	"time"
)

// Dial opens the inner connection.
type Dial func(ctx context.Context, network, addr string) (net.Conn, error)

// Serve accepts on l and relays every connection to target through dial until ctx ends.
func Serve(ctx context.Context, l net.Listener, target string, dial Dial, logger *log.Logger) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			relay(ctx, c, target, dial, logger)
		}()
	}
}

func relay(ctx context.Context, c net.Conn, target string, dial Dial, logger *log.Logger) {
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	inner, err := dial(dctx, "tcp", target)
	if err != nil {
		if logger != nil {
			logger.Printf("forward: dial %s: %v", target, err)
		}
		return
	}
	defer inner.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so that the other direction can finish (HTTP/2 and watch streams rely on it).
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(inner, c)
	go pipe(c, inner)
	select {
	case <-done:
		<-done
	case <-ctx.Done():
	}
}
