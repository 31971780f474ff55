// The real node's sandbox ("pause") process, built by scripts/bootstrap-cluster.sh: no public registry is reachable
// here, so registry.k8s.io/pause cannot be pulled. It holds the pod's namespaces, reaps orphans as PID 1 of a
// shared PID namespace would, and exits on SIGINT/SIGTERM. Standard library only: a static binary in a scratch image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
