package config

import (
	"errors"
	"strings"
	"testing"
)

func TestClusterConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      []string
		problem  string // a field named in the error; "" = valid
		replicas int
		parts    int
	}{
		{name: "single node", env: nil, replicas: 1, parts: DefaultPartitions},
		{name: "single node external", env: []string{"VIGIE_NATS_URL=nats://127.0.0.1:4222"}, replicas: 1, parts: DefaultPartitions},
		{name: "cluster defaults", env: []string{"VIGIE_CLUSTER_NODE_ID=n1", "VIGIE_NATS_URL=nats://127.0.0.1:4222"}, replicas: 3, parts: 16},
		{name: "cluster chosen", env: []string{"VIGIE_CLUSTER_NODE_ID=n1", "VIGIE_NATS_URL=nats://a:4222", "VIGIE_NATS_REPLICAS=5", "VIGIE_CLUSTER_PARTITIONS=64"}, replicas: 5, parts: 64},
		{name: "cluster without url", env: []string{"VIGIE_CLUSTER_NODE_ID=n1"}, problem: "cluster.node_id: cluster mode needs nats.url"},
		{name: "bad node id", env: []string{"VIGIE_CLUSTER_NODE_ID=Node A", "VIGIE_NATS_URL=nats://a:4222"}, problem: "cluster.node_id: \"Node A\""},
		{name: "too many partitions", env: []string{"VIGIE_CLUSTER_NODE_ID=n1", "VIGIE_NATS_URL=nats://a:4222", "VIGIE_CLUSTER_PARTITIONS=300"}, problem: "cluster.partitions"},
		{name: "too many replicas", env: []string{"VIGIE_NATS_REPLICAS=7"}, problem: "nats.replicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load("", tc.env)
			if tc.problem != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("want an error naming %q, got %v", tc.problem, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.NATS.Replicas != tc.replicas || cfg.Cluster.PartitionCount() != tc.parts {
				t.Fatalf("replicas %d partitions %d, want %d %d", cfg.NATS.Replicas, cfg.Cluster.PartitionCount(), tc.replicas, tc.parts)
			}
		})
	}
}
