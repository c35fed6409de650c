package proxy

import (
	"net/http"
	"slices"
	"time"

	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/storage"
)

// clusterRoutes registers the membership's admin routes: GET
// /admin/v1/cluster/nodes lists the members, DELETE
// /admin/v1/cluster/nodes/{node} removes a dead one (the privacy requests
// then stop waiting for its steps). Admin only (proxy/access).
func (s *Server) clusterRoutes(mux *http.ServeMux) {
	mux.Handle("GET /admin/v1/cluster/nodes", s.admin(s.handleClusterNodes))
	mux.Handle("DELETE /admin/v1/cluster/nodes/{node}", s.admin(s.handleClusterRemove))
}

// clusterNode is one member as the admin API shows it.
type clusterNode struct {
	Node     string    `json:"node"`
	Live     bool      `json:"live"`
	Self     bool      `json:"self,omitempty"`
	JoinedAt time.Time `json:"joined_at"`
	SeenAt   time.Time `json:"seen_at"`
}

// clusterMembers reads the membership, answering 409 (single node) or 503 itself.
func (s *Server) clusterMembers(w http.ResponseWriter, r *http.Request) ([]cluster.Member, bool) {
	if s.members == nil {
		writeError(w, http.StatusConflict, "not_clustered", "this node does not run in cluster mode (cluster.node_id is not set)", nil)
		return nil, false
	}
	ms, err := s.members.List(r.Context())
	if err != nil {
		s.log.Warn("cluster membership not readable", "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "cluster_unavailable", "the cluster membership could not be read; retry later", nil)
		return nil, false
	}
	return ms, true
}

// handleClusterNodes lists the members, live or not.
func (s *Server) handleClusterNodes(w http.ResponseWriter, r *http.Request) {
	ms, ok := s.clusterMembers(w, r)
	if !ok {
		return
	}
	out := make([]clusterNode, 0, len(ms))
	for _, m := range ms {
		out = append(out, clusterNode{Node: m.Node, Live: m.Live, Self: m.Node == s.cfg.Cluster.NodeID,
			JoinedAt: time.UnixMilli(m.JoinedMs).UTC(), SeenAt: time.UnixMilli(m.SeenMs).UTC()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": out})
}

// handleClusterRemove removes a member that is not live: an operator
// decommissioning a node that will not come back. A live node is refused
// (it would write itself back at its next heartbeat): stop it first.
func (s *Server) handleClusterRemove(w http.ResponseWriter, r *http.Request) {
	ms, ok := s.clusterMembers(w, r)
	if !ok {
		return
	}
	node := r.PathValue("node")
	i := slices.IndexFunc(ms, func(m cluster.Member) bool { return m.Node == node })
	switch {
	case i < 0:
		writeError(w, http.StatusNotFound, "not_found", "node: no member with this id (GET /admin/v1/cluster/nodes lists them)", nil)
		return
	case ms[i].Live:
		writeError(w, http.StatusConflict, "node_live", "node: this member is live (it heartbeats); stop it first, then remove it once it is no longer live", nil)
		return
	}
	if err := s.members.Remove(r.Context(), node); err != nil {
		s.log.Warn("cluster member not removed", "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "cluster_unavailable", "the member could not be removed; retry later", nil)
		return
	}
	s.audit(r.Context(), storage.AuditEntry{At: time.Now().UTC(), Action: "cluster.node.remove", Fields: []string{"node." + node}})
	writeJSON(w, http.StatusOK, map[string]any{"removed": node})
}
