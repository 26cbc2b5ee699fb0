package lab

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// removeAllPodSandboxes stops and removes every pod sandbox through containerd's CRI API. This is
// the only clean way to undo what kubelet asked for: the CRI plugin then runs the CNI DEL (which
// frees the pod's IP and veth), unmounts the pod's network namespace from /run/netns and stops the
// shims. It must run after kubelet stopped, or kubelet would start the pods again.
func (l Layout) removeAllPodSandboxes(ctx context.Context) (int, error) {
	conn, err := grpc.NewClient("unix://"+l.ContainerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	// A containerd just started answers on its socket before its CRI plugin has loaded its
	// state ("server is not initialized yet"): wait for that, or the sandboxes would be missed.
	var resp *runtimeapi.ListPodSandboxResponse
	deadline := time.Now().Add(30 * time.Second)
	for {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err = rt.ListPodSandbox(lctx, &runtimeapi.ListPodSandboxRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("lab: list pod sandboxes: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var firstErr error
	for _, sb := range resp.Items {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := rt.StopPodSandbox(sctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("lab: stop sandbox %s/%s: %w", sb.Metadata.GetNamespace(), sb.Metadata.GetName(), err)
		}
		if _, err := rt.RemovePodSandbox(sctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("lab: remove sandbox %s/%s: %w", sb.Metadata.GetNamespace(), sb.Metadata.GetName(), err)
		}
		cancel()
	}
	return len(resp.Items), firstErr
}
