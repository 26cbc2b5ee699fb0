// Command coredns is CoreDNS v1.14.7 with the plugins the lab's Corefile uses and nothing else.
//
// CoreDNS's own main imports every plugin (cloud DNS providers, etcd, ...), which makes a cold
// build take about ten minutes on two cores. CoreDNS supports choosing the plugins at compile
// time: import them and set dnsserver.Directives in the order of CoreDNS's own plugin.cfg.
// There is no "forward": the lab reaches nothing outside itself, so names that are not the
// cluster's get an error at once instead of a timeout.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	// The order of execution, as in CoreDNS's plugin.cfg.
	dnsserver.Directives = []string{"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() { coremain.Run() }
