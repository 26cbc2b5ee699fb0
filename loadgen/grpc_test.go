package loadgen

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"fortio.org/fortio/fgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// grpcTarget is a gRPC server on loopback with the standard health service
// and fortio's Ping service, both taking serviceTime per call.
type grpcTarget struct {
	grpc_health_v1.UnimplementedHealthServer
	checks, pings atomic.Int64
	payloadBytes  atomic.Int64
}

func (g *grpcTarget) Check(context.Context, *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	g.checks.Add(1)
	time.Sleep(serviceTime)
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

func (g *grpcTarget) Ping(_ context.Context, in *fgrpc.PingMessage) (*fgrpc.PingMessage, error) {
	g.pings.Add(1)
	g.payloadBytes.Add(int64(len(in.Payload)))
	time.Sleep(serviceTime)
	return in, nil
}

func startGRPC(t *testing.T) (*grpcTarget, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &grpcTarget{}
	s := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(s, g)
	fgrpc.RegisterPingServerServer(s, g)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return g, l.Addr().String()
}

func TestGRPCHealth(t *testing.T) {
	g, addr := startGRPC(t)
	r, err := Run(context.Background(), Config{URL: "grpc://" + addr, Protocol: GRPC, Connections: 2, Requests: 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	if r.Requests != 40 || g.checks.Load() != 40 || r.Codes["SERVING"] != 40 || r.Errors != 0 {
		t.Errorf("requests %d, server checks %d, codes %v, errors %d", r.Requests, g.checks.Load(), r.Codes, r.Errors)
	}
	if r.LatencyMs.Min < serviceTimeMs {
		t.Errorf("min latency %g ms < service time", r.LatencyMs.Min)
	}
}

func TestGRPCPingPayload(t *testing.T) {
	g, addr := startGRPC(t)
	c := Config{URL: "http://" + addr, Protocol: GRPC, GRPCPing: true, PayloadSize: 100, Connections: 1, Requests: 20}
	r, err := Run(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, r)
	if r.Requests != 20 || g.pings.Load() != 20 || g.payloadBytes.Load() != 20*100 || g.checks.Load() != 0 {
		t.Errorf("requests %d, pings %d carrying %d bytes, checks %d", r.Requests, g.pings.Load(), g.payloadBytes.Load(), g.checks.Load())
	}
}
