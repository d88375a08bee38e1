// The etcd the local control plane runs, built from etcd's published Go module (its server
// package's own entry point), so the API server gets the storage features it asks of a
// current etcd (RequestWatchProgress, which streamed lists need).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
