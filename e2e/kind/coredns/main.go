// CoreDNS for the offline kind node image, with only the plugins the cluster's Corefile
// (../coredns.yaml) uses. The full build links every plugin CoreDNS ships, cloud DNS clients
// included, and takes several times as long to compile on a small machine.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The Corefile's plugins, in the order CoreDNS runs them (its plugin.cfg order).
func init() {
	dnsserver.Directives = []string{
		"reload",
		"ready",
		"health",
		"prometheus",
		"errors",
		"cache",
		"kubernetes",
	}
}

func main() {
	coremain.Run()
}
