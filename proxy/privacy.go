package proxy

import (
	"context"
	"net/http"
	"time"

	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/privacy"
	"github.com/vigie-dev/vigie/storage"
)

// startPrivacy starts the privacy request runner (package privacy): after
// the bus, before the plugin runtime, which reports to it each plugin's
// acknowledgement of an erasure.
func (s *Server) startPrivacy(ctx context.Context) error {
	sites := map[string]*pipeline.Site{}
	for id, st := range s.sites.Load().byID { // sites added later reach it at the next start
		sites[id] = st.pipe
	}
	pc := privacy.Config{
		Store: s.store, Ledger: s.ledger, Blind: s.blind, Sites: sites,
		JetStream: s.bus.JetStream(), Auditor: s.auditor,
		Logger:    s.log.With("component", "privacy"),
		Retention: s.storageRetention().Requests, PurgeInterval: purgeInterval,
	}
	if node := s.cfg.Cluster.NodeID; node != "" {
		pc.ErasedMessages = func(site string, subjects []string) ([]storage.Message, error) {
			return cluster.LedgerTombstones(node, site, subjects, time.Now())
		}
		pc.NodeScoped = func(plugin string) bool {
			rt := s.profileRuntime.Load() // the runtime starts after this service
			return rt != nil && rt.NodeScoped(plugin)
		}
		pc.Peers = &cluster.Requests{JS: s.bus, Self: node, Members: s.members, Marks: s.store,
			Logger: s.log.With("component", "cluster")}
	}
	for _, p := range s.cfg.Purposes {
		pc.Purposes = append(pc.Purposes, string(p.Name))
	}
	for _, p := range s.cfg.Plugins {
		if !p.Disabled {
			pc.Plugins = append(pc.Plugins, p.Name)
		}
	}
	svc, err := privacy.New(pc)
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	s.privacy = svc
	return nil
}

// privacyRoutes registers the privacy request API behind the admin token.
func (s *Server) privacyRoutes(mux *http.ServeMux) {
	s.privacy.RegisterAdmin(mux, s.admin)
}
