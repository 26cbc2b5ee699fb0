// Command caddy is Caddy v2.11.9, unmodified, with only the modules a reverse proxy in the
// sidecar position needs: the lab's "third-party proxy" (image mesh-caddy), run as
//
//	caddy reverse-proxy --from :15006 --to 127.0.0.1:8080
//
// behind mesh-sidecar's init REDIRECT, so the probe is checked against a proxy we did not write.
//
// Caddy's own main imports every standard module (file server, templates, ACME server, ...);
// importing the reverse proxy alone brings in what it depends on (the HTTP app, TLS, the
// Caddyfile adapter, header manipulation) and registers the `reverse-proxy` command, and
// leaves out the rest, which the lab never uses. It is a module of its own because Caddy pins
// its own dependencies (quic-go, certmagic, ...), which must not move the product's.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func main() { caddycmd.Main() }
