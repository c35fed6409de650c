package proxy

import (
	"context"
	"net/http"
	"path/filepath"
	"time"

	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/pipeline"
)

// startImports starts the import service (package imports): after the
// privacy service, whose suppression set keeps erased people out of
// imports too. Its uploads live in data_dir/imports.
func (s *Server) startImports(ctx context.Context) error {
	sites := map[string]*pipeline.Site{}
	for id, st := range s.sites.Load().byID { // sites added later reach it at the next start
		sites[id] = st.pipe
	}
	ic := imports.Config{
		Store: s.store, Pipeline: s.pipe, Sites: sites, Ledger: s.ledger, Blind: s.blind,
		Dir:             filepath.Join(s.cfg.DataDir, "imports"),
		Retention:       time.Duration(s.cfg.Retention[config.RetentionImported]),
		OutboxHighWater: s.cfg.Storage.MaxOutbox / 4,
		StallTimeout:    time.Duration(s.cfg.Limits.ReadTimeout),
		Logger:          s.log.With("component", "imports"),
	}
	if s.privacy != nil {
		ic.Suppressor = s.privacy
	}
	var calls *cluster.ImportCalls
	if s.cfg.Cluster.Enabled() {
		calls = &cluster.ImportCalls{JS: s.bus}
		ic.Shared, ic.Node, ic.Remote = &cluster.ImportJobs{JS: s.bus}, s.cfg.Cluster.NodeID, calls
	}
	for _, p := range s.cfg.Purposes {
		ic.Purposes = append(ic.Purposes, string(p.Name))
	}
	for _, p := range s.cfg.PluginRuntime.ProfilePurposes {
		ic.ProfilePurposes = append(ic.ProfilePurposes, string(p))
	}
	svc, err := imports.New(ic)
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	s.imports = svc
	if calls != nil {
		// What the other nodes pass on for this node's jobs.
		stop, err := calls.Serve(context.WithoutCancel(ctx), s.cfg.Cluster.NodeID, svc.ServeRemote)
		if err != nil {
			return err
		}
		s.importCallsStop = stop
	}
	return nil
}

// stopImports stops answering other nodes' calls, then the import service.
func (s *Server) stopImports(ctx context.Context) error {
	if s.importCallsStop != nil {
		s.importCallsStop()
		s.importCallsStop = nil
	}
	if s.imports == nil {
		return nil
	}
	return s.imports.Stop(ctx)
}

// importRoutes registers the import API behind the admin token, refused
// while the disk is full like every write.
func (s *Server) importRoutes(mux *http.ServeMux) {
	s.imports.RegisterAdmin(mux, s.admin)
}
