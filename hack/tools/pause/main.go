// Command pause is the sandbox ("pause") container of the local cluster's real node: it holds a pod's
// namespaces open until the kubelet stops the pod, and reaps the zombies of processes that ended inside
// them (as PID 1 of a pod that shares its PID namespace it is their parent).
//
// The upstream pause image cannot be pulled on a machine that reaches no public registry, so
// hack/build-tools.sh builds this one and localcluster/up.sh pushes it to the local registry, where
// containerd's sandbox_image points.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("trainpipe pause")
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1")
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			fmt.Fprintf(os.Stderr, "pause: %v: exiting\n", sig)
			return
		}
		reap()
	}
}

// reap collects every child that has exited, without blocking on the ones still running.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
