package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/preflight"
	"github.com/vigie-dev/vigie/proxy/privacy"
	"github.com/vigie-dev/vigie/proxy/register"
	"github.com/vigie-dev/vigie/storage"
)

// purgeInterval is how often the store purges what outlived its retention
// (storage.PurgeExpired), the first time at start.
const purgeInterval = 24 * time.Hour

// storageRetention is what the store bounds beyond Badger's TTLs, from the
// configuration: the audit trail, completed requests, and plugin KV data
// (at most the longest event retention).
func (s *Server) storageRetention() storage.Retention {
	return storage.Retention{
		Audit:    s.cfg.RetentionOf(config.RetentionAudit),
		Requests: s.cfg.RetentionOf(config.RetentionRequests),
		PluginKV: s.cfg.LongestRetention(),
	}
}

// OrganizationCheck is the `vigie check` row of the organization section:
// without the controller's name and contact, production refuses to start
// (fail), and otherwise it is a warning.
func OrganizationCheck(cfg config.Config) preflight.Result {
	r := preflight.Result{Name: "organization", Status: preflight.Pass, Detail: "controller " + cfg.Organization.Name}
	if p := cfg.OrganizationProblem(); p != "" {
		r.Status, r.Detail = preflight.Warn, p+" (production: true refuses to start)"
		if cfg.Production {
			r.Status, r.Detail = preflight.Fail, p
		}
	}
	return r
}

// checkOrganization refuses a production start without the controller's
// name and contact.
func (s *Server) checkOrganization() error {
	rep := preflight.Report{OrganizationCheck(s.cfg)}
	if err := rep.Err(); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}

// startRights makes the audit trail's writer and the preference page.
func (s *Server) startRights() error {
	s.auditor = privacy.StoreAuditor{Store: s.store}
	pc := privacy.PreferencesConfig{
		Signer: s.emailSigner, Ledger: s.ledger, Purposes: s.cfg.Purposes, Auditor: s.auditor,
		Logger: s.log.With("component", "preferences"),
	}
	pc.Sites = s.siteIDs()
	var err error
	s.prefs, err = privacy.NewPreferences(pc)
	return err
}

// rightsRoutes adds the preference page, the audit trail and the register
// of processing.
func (s *Server) rightsRoutes(mux *http.ServeMux) {
	s.prefs.Register(mux)
	mux.Handle("GET /admin/v1/audit", s.admin(s.handleAdminAudit))
	mux.Handle("GET /admin/v1/register", s.admin(s.handleAdminRegister))
}

// contactAudit records contact details given to a plugin
// (plugins.Config.ContactAudit).
func (s *Server) contactAudit(ctx context.Context, r plugins.ContactResolution) error {
	return s.auditor.Audit(ctx, privacy.AuditEntry{
		Actor: privacy.PluginActor(r.Plugin), Action: privacy.ActionContactsResolve,
		Site: r.Site, Fields: r.Fields, Count: r.Count,
	})
}

// Auditor is the audit trail's writer (for the privacy request runner).
func (s *Server) Auditor() privacy.Auditor { return s.auditor }

// handleAdminAudit lists the audit trail, oldest first. Query: from and to
// (RFC 3339; from included, to excluded), action, limit (1–1000, default
// 100), after (the "next" cursor of the previous page).
func (s *Server) handleAdminAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	aq := storage.AuditQuery{Action: q.Get("action"), After: q.Get("after"), Limit: 100}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &aq.From}, {"to", &aq.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_time", p.name+": must be an RFC 3339 time such as 2026-03-01T00:00:00Z", nil)
				return
			}
			*p.dst = t
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_limit", "limit: must be an integer from 1 to 1000", nil)
			return
		}
		aq.Limit = n
	}
	entries, next, err := s.store.ListAudit(r.Context(), aq)
	switch {
	case errors.Is(err, storage.ErrInvalidKey):
		writeError(w, http.StatusBadRequest, "invalid_cursor", "after: not a cursor returned by this listing", nil)
		return
	case err != nil:
		s.log.Error("listing the audit trail failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "the audit trail could not be read; retry later", nil)
		return
	}
	if entries == nil {
		entries = []storage.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries, "next": next})
}

// Register is the register of processing of the running server: its
// configuration (with its CRM destinations) and the manifests its plugins
// declared.
func (s *Server) Register() register.Register {
	var running []plugins.PluginManifest
	if s.plugins != nil {
		running = s.plugins.Manifests()
	}
	return register.Build(register.Input{
		Config: s.cfg, Plugins: register.Plugins(s.cfg, running), Generator: "Vigie " + Version,
	})
}

// handleAdminRegister answers the register of processing (Art. 30):
// JSON, or Markdown with format=markdown (or Accept: text/markdown).
func (s *Server) handleAdminRegister(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" && strings.Contains(r.Header.Get("Accept"), "text/markdown") {
		format = "markdown"
	}
	reg := s.Register()
	switch format {
	case "", "json":
		b, err := reg.JSON()
		if err != nil {
			s.log.Error("register not encoded", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "the register could not be made", nil)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	case "markdown", "md":
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(reg.Markdown())
	default:
		writeError(w, http.StatusBadRequest, "invalid_format", "format: json or markdown", nil)
	}
}
