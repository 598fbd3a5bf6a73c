package localcluster

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/duet-llm/duet/cluster"
	nodev1 "github.com/duet-llm/duet/proto/duet/node/v1"
)

// Descriptor reads a member's descriptor from etcd; ok is false while it
// is not registered.
func (c *Cluster) Descriptor(ctx context.Context, p *Proc) (d cluster.Descriptor, ok bool, err error) {
	cfg := cluster.DefaultConfig()
	cfg.Etcd.Endpoints = c.Etcd.Endpoints()
	cli, err := cfg.NewEtcdClient(nil)
	if err != nil {
		return d, false, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, cluster.NodeKey(c.clusterN, p.Role, p.Name))
	if err != nil || len(resp.Kvs) == 0 {
		return d, false, err
	}
	d, err = cluster.UnmarshalDescriptor(resp.Kvs[0].Value)
	return d, err == nil, err
}

// WaitRegistered waits until p is registered in etcd and returns its
// descriptor.
func (c *Cluster) WaitRegistered(ctx context.Context, p *Proc) (cluster.Descriptor, error) {
	for {
		d, ok, err := c.Descriptor(ctx, p)
		if ok {
			return d, nil
		}
		if p.Exited() {
			return d, fmt.Errorf("%s exited: %v", p.Name, p.err)
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("%s not registered: %v %w", p.Name, err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Info asks a node for its NodeService Info.
func (c *Cluster) Info(ctx context.Context, p *Proc) (*nodev1.InfoResponse, error) {
	d, err := c.WaitRegistered(ctx, p)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(d.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	return nodev1.NewNodeServiceClient(cc).Info(ctx, &nodev1.InfoRequest{})
}

// MetricsURL is the URL of p's Prometheus endpoint: the router serves
// /metrics on its API port, a node on the address it advertises as
// http_addr (--metrics-listen).
func (c *Cluster) MetricsURL(ctx context.Context, p *Proc) (string, error) {
	d, err := c.WaitRegistered(ctx, p)
	if err != nil {
		return "", err
	}
	if d.HTTPAddr == "" {
		return "", fmt.Errorf("%s advertises no HTTP address", p.Name)
	}
	return "http://" + d.HTTPAddr + "/metrics", nil
}
