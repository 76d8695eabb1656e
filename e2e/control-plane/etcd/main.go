// Command etcd is the upstream etcd server, built from the version pinned in
// go.mod (for the validator-webhook e2e control plane; see ../build.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
