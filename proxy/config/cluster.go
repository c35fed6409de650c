package config

import "fmt"

// Cluster defaults.
const (
	// DefaultPartitions is cluster.partitions' default.
	DefaultPartitions = 16
	// MaxPartitions bounds cluster.partitions (each is one durable
	// consumer per segmenter).
	MaxPartitions = 256
	// DefaultClusterReplicas is nats.replicas' default in cluster mode.
	DefaultClusterReplicas = 3
	// maxReplicas is JetStream's largest replication factor.
	maxReplicas = 5
)

// Cluster runs this node as one of several Vigie nodes behind a load
// balancer, sharing one NATS JetStream cluster (nats.url): the messageId
// dedup keys, the consent ledger, the privacy requests, the profiles and
// the vault's ciphertext are shared through replicated KV buckets, and
// segmentation is partitioned between the live nodes. Every node must
// have the same keyring (the first node publishes it sealed under the
// master key; later nodes with a new data dir adopt it), so every node
// needs the same master key.
type Cluster struct {
	// NodeID names this node, unique in the cluster: 1-64 characters of
	// a-z, 0-9, _ and -. Setting it switches cluster mode on, which needs
	// nats.url. Default empty: a single node.
	NodeID string `yaml:"node_id"`
	// Partitions is the number of segmentation partitions: a subject's
	// profile is kept by the node holding its partition's lease. Every
	// node must use the same number. Default 16 (DefaultPartitions), at
	// most 256.
	Partitions int `yaml:"partitions"`
}

// Enabled reports whether cluster mode is on.
func (c Cluster) Enabled() bool { return c.NodeID != "" }

// PartitionCount is Partitions, or its default when unset.
func (c Cluster) PartitionCount() int {
	if c.Partitions <= 0 {
		return DefaultPartitions
	}
	return c.Partitions
}

// StreamReplicas is nats.replicas, or its default when unset: 1 for a
// single node, DefaultClusterReplicas in cluster mode.
func (c *Config) StreamReplicas() int {
	switch {
	case c.NATS.Replicas > 0:
		return c.NATS.Replicas
	case c.Cluster.Enabled():
		return DefaultClusterReplicas
	}
	return 1
}

// validateCluster checks the cluster section and what it needs of nats.
func (c *Config) validateCluster() []error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...)))
	}
	if c.NATS.Replicas < 0 || c.NATS.Replicas > maxReplicas {
		bad("nats.replicas", "%d must be between 1 and %d (0: the default)", c.NATS.Replicas, maxReplicas)
	}
	if !c.Cluster.Enabled() {
		return errs
	}
	if !validSiteID(c.Cluster.NodeID) {
		bad("cluster.node_id", "%q must be 1-64 characters of a-z, 0-9, _ and -", c.Cluster.NodeID)
	}
	if c.NATS.URL == "" {
		bad("cluster.node_id", "cluster mode needs nats.url: the nodes share an external NATS JetStream cluster, not an embedded server")
	}
	if c.Cluster.Partitions < 0 || c.Cluster.Partitions > MaxPartitions {
		bad("cluster.partitions", "%d must be between 1 and %d (0: the default %d)", c.Cluster.Partitions, MaxPartitions, DefaultPartitions)
	}
	return errs
}
