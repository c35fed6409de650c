// Package register builds the register of processing activities (Art. 30
// GDPR) of a Vigie deployment from what Vigie knows for certain: its
// configuration (organization, purposes, sites, retention, NATS, key
// custody), the manifests of its plugins, its CRM destinations
// (Destinations: processors, with their location) and the further
// recipients the caller adds. It renders it as JSON and as
// Markdown, with every item of Art. 30(1)(a)–(g) and field names that
// follow the CNIL's model register ("Registre des activités de
// traitement", fiche de registre): each section carries its English label,
// the CNIL's French label and the article it answers.
//
// There is one activity (fiche) per configured purpose, plus one for the
// anonymous counts kept without consent when a site keeps them. What Vigie
// cannot know (the controller's address, transfers made by systems it
// feeds) comes from the configuration or is said to be the operator's to
// complete.
package register

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/storage"
)

// Input is what the register is built from.
type Input struct {
	// Config is the configuration (validated).
	Config config.Config
	// Plugins are the configured plugins with their manifests.
	Plugins []Plugin
	// Recipients are further recipients: any other system the data is
	// sent to. The CRM destinations of Config are added by Build.
	Recipients []Recipient
	// GeneratedAt is the time of the register. Default now.
	GeneratedAt time.Time
	// Generator names the software and version, e.g. "Vigie 0.1.0".
	Generator string
}

// Plugin is a configured plugin.
type Plugin struct {
	// Name is the configured name.
	Name string
	// Builtin reports a plugin compiled into vigie.
	Builtin bool
	// Manifest is what the plugin declared; nil when it could not be read
	// (an external plugin described without starting Vigie).
	Manifest *sdk.Manifest
}

// Recipient kinds, the CNIL's three columns of recipients.
const (
	// Internal: a component or service of the controller.
	Internal = "internal"
	// Processor: a processor acting on the controller's behalf (Art. 28).
	Processor = "processor"
	// External: another organisation receiving the data.
	External = "external"
)

// Recipient is someone the data of an activity is disclosed to.
type Recipient struct {
	// Name of the recipient (a plugin, a CRM destination…).
	Name string `json:"name"`
	// Kind is Internal, Processor or External.
	Kind string `json:"kind"`
	// Receives says which data it gets.
	Receives string `json:"receives"`
	// PersonalData reports that it gets data that identifies a person
	// directly (contact details), not only pseudonymous data.
	PersonalData bool `json:"personal_data"`
	// Purposes it receives data for; empty: every purpose.
	Purposes []string `json:"purposes,omitempty"`
	// Country where it processes the data (ISO 3166 alpha-2, or EU), if
	// known.
	Country string `json:"country,omitempty"`
	// Guarantee of a transfer outside the EEA (adequacy decision, SCCs,
	// BCRs…), if any.
	Guarantee string `json:"guarantee,omitempty"`
}

// Section is one item of the register: its value with its English label,
// the CNIL model register's French label and the article it answers.
type Section[T any] struct {
	Label   string `json:"label"`
	LabelFR string `json:"label_fr"`
	Article string `json:"article,omitempty"`
	Value   T      `json:"value"`
}

func section[T any](label, fr, article string, v T) Section[T] {
	return Section[T]{Label: label, LabelFR: fr, Article: article, Value: v}
}

// Register is the register of processing activities.
type Register struct {
	Title       string    `json:"title"`
	TitleFR     string    `json:"title_fr"`
	GeneratedAt time.Time `json:"generated_at"`
	Generator   string    `json:"generator,omitempty"`
	// Organization is Art. 30(1)(a): the controller, its representative,
	// its DPO and joint controllers.
	Organization Organization `json:"organization"`
	// Activities are the processing activities, one fiche each.
	Activities []Activity `json:"activities"`
	// SpecialCategories is how each special category of data is handled,
	// per site (sensitive.go).
	SpecialCategories Section[[]SpecialCategory] `json:"special_categories"`
	// ToComplete lists what the operator must still fill in.
	ToComplete []string `json:"to_complete,omitempty"`
}

// Party is a controller, representative, DPO or joint controller.
type Party struct {
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	Contact string `json:"contact,omitempty"`
	Phone   string `json:"phone,omitempty"`
}

// Organization is the register's first sheet.
type Organization struct {
	Controller       Section[Party]   `json:"controller"`
	Representative   Section[*Party]  `json:"representative"`
	DPO              Section[*Party]  `json:"dpo"`
	JointControllers Section[[]Party] `json:"joint_controllers"`
}

// Activity is one fiche of the register.
type Activity struct {
	Reference      Section[string]            `json:"reference"`
	Designation    Section[string]            `json:"designation"`
	UpdatedAt      Section[string]            `json:"updated_at"`
	Purposes       Section[Purposes]          `json:"purposes"`
	DataSubjects   Section[[]string]          `json:"data_subjects"`
	DataCategories Section[[]DataCategory]    `json:"data_categories"`
	SensitiveData  Section[string]            `json:"sensitive_data"`
	Recipients     Section[[]Recipient]       `json:"recipients"`
	Transfers      Section[Transfers]         `json:"transfers"`
	Retention      Section[[]RetentionPeriod] `json:"retention"`
	Security       Section[[]SecurityMeasure] `json:"security_measures"`
}

// Purposes are an activity's main purpose and sub-purposes.
type Purposes struct {
	Main Section[string]   `json:"main"`
	Sub  Section[[]string] `json:"sub"`
	// LegalBasis is the lawfulness of the processing (Art. 6).
	LegalBasis Section[string] `json:"legal_basis"`
}

// DataCategory is one of the CNIL's categories of personal data, with what
// Vigie keeps of it.
type DataCategory struct {
	Category   string `json:"category"`
	CategoryFR string `json:"category_fr"`
	Data       string `json:"data"`
}

// Transfers is Art. 30(1)(e).
type Transfers struct {
	Any       bool       `json:"any"`
	Statement string     `json:"statement"`
	List      []Transfer `json:"list,omitempty"`
}

// Transfer is a transfer outside the EEA.
type Transfer struct {
	Recipient string `json:"recipient"`
	Country   string `json:"country"`
	Guarantee string `json:"guarantee"`
}

// RetentionPeriod is how long a category of data is kept, and where that
// is configured.
type RetentionPeriod struct {
	Data     string `json:"data"`
	Duration string `json:"duration"`
	Days     int    `json:"days,omitempty"`
	Setting  string `json:"setting,omitempty"`
}

// SecurityMeasure is one of the CNIL's kinds of measures, with what Vigie
// does.
type SecurityMeasure struct {
	Measure   string `json:"measure"`
	MeasureFR string `json:"measure_fr"`
	Applied   bool   `json:"applied"`
	Detail    string `json:"detail"`
}

// eea are the countries of the European Economic Area (ISO 3166 alpha-2).
var eea = []string{"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
	"IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK"}

// Build builds the register of in.
func Build(in Input) Register {
	if in.GeneratedAt.IsZero() {
		in.GeneratedAt = time.Now()
	}
	cfg := in.Config
	in.Recipients = append(Destinations(cfg), in.Recipients...)
	r := Register{
		Title: "Register of processing activities", TitleFR: "Registre des activités de traitement",
		GeneratedAt: in.GeneratedAt.UTC().Truncate(time.Second), Generator: in.Generator,
	}
	o := cfg.Organization
	r.Organization = Organization{
		Controller: section("Controller", "Responsable du traitement (coordonnées du responsable de l'organisme)", "30(1)(a)",
			Party{Name: o.Name, Address: o.Address, Contact: o.Contact, Phone: o.Phone}),
		Representative: section("Representative in the Union", "Représentant (responsable établi hors de l'UE)", "30(1)(a), 27",
			partyOrNil(o.Representative)),
		DPO:              section("Data protection officer", "Délégué à la protection des données (DPO)", "30(1)(a), 37", partyOrNil(o.DPO)),
		JointControllers: section("Joint controllers", "Responsable(s) conjoint(s)", "30(1)(a), 26", parties(o.JointControllers)),
	}
	if p := cfg.OrganizationProblem(); p != "" {
		r.ToComplete = append(r.ToComplete, p)
	}
	for _, pi := range cfg.Purposes {
		r.Activities = append(r.Activities, buildActivity(in, string(pi.Name), pi.Description))
	}
	if anonymousCounts(cfg) {
		r.Activities = append(r.Activities, buildActivity(in, config.RetentionAnonymous,
			"Counting visits without consent: anonymous events with no identifier of any kind."))
	}
	r.SpecialCategories = section("Special categories of data", "Données sensibles (catégories particulières de données)", "9, 10",
		specialCategories(cfg))
	for _, rc := range in.Recipients {
		if rc.Country == "" && rc.Kind != Internal {
			r.ToComplete = append(r.ToComplete, fmt.Sprintf("recipient %q: where it keeps the data is not declared (a CRM destination's location)", rc.Name))
		}
	}
	for _, p := range in.Plugins {
		if p.Manifest == nil {
			r.ToComplete = append(r.ToComplete, fmt.Sprintf("plugin %q: its manifest was not read (an external plugin); build the register from the running server (GET /admin/v1/register) to describe what it receives", p.Name))
		}
	}
	return r
}

// anonymousCounts reports whether a site keeps anonymous events.
func anonymousCounts(cfg config.Config) bool {
	for _, s := range cfg.Sites {
		if pol, err := s.Policy(); err == nil && pol.Unconsented == consent.Anonymous {
			return true
		}
	}
	return false
}

func partyOrNil(p config.Party) *Party {
	if p.IsZero() {
		return nil
	}
	return &Party{Name: p.Name, Address: p.Address, Contact: p.Contact, Phone: p.Phone}
}

func parties(ps []config.Party) []Party {
	out := []Party{}
	for _, p := range ps {
		out = append(out, Party{Name: p.Name, Address: p.Address, Contact: p.Contact, Phone: p.Phone})
	}
	return out
}

// profiled reports whether purpose allows profiling (profile_purposes).
func profiled(cfg config.Config, purpose string) bool {
	return slices.Contains(cfg.PluginRuntime.ProfilePurposes, consent.Purpose(purpose))
}

func buildActivity(in Input, purpose, description string) Activity {
	cfg := in.Config
	anon := purpose == config.RetentionAnonymous
	necessary := purpose == string(consent.Necessary)
	var sites []string
	for _, s := range cfg.Sites {
		sites = append(sites, s.ID)
	}
	name := fmt.Sprintf("First-party tracking for the purpose %q", purpose)
	if anon {
		name = "Anonymous audience counts (no consent)"
	}
	a := Activity{
		Reference:   section("Reference", "N° / référence", "", "vigie-"+purpose),
		Designation: section("Processing activity", "Désignation de l'activité de traitement (nom / sigle)", "", name),
		UpdatedAt:   section("Last updated", "Dernière mise à jour de la fiche", "", in.GeneratedAt.UTC().Format("2006-01-02")),
	}

	// (b) purposes
	var sub []string
	if necessary {
		sub = append(sub, "always granted; an event that grants nothing more is kept anonymous, as the anonymous counts (vigie-anonymous) are")
	} else if !anon {
		sub = append(sub, "pseudonymous measurement of visits and events on the sites "+strings.Join(sites, ", "))
		if profiled(cfg, purpose) {
			sub = append(sub, "profiles of pseudonymous subjects: activity counters, lead score, segment membership")
		}
		if purpose == string(consent.Marketing) {
			sub = append(sub, "tracking of opens and clicks of marketing e-mails (signed links), and the recipient's preference page")
		}
	} else {
		sub = append(sub, "counts per page, referrer host and device class on the sites "+strings.Join(sites, ", "))
	}
	for _, p := range pluginsFor(in.Plugins, in.Config, purpose) {
		if p.Manifest != nil && p.Manifest.Description != "" {
			sub = append(sub, "plugin "+p.Name+": "+strings.TrimSuffix(p.Manifest.Description, "."))
		}
	}
	sub = append(sub, profiling(cfg, purpose)...)
	basis := "Consent (Art. 6(1)(a)), read from the visitor's consent signals and the consent ledger; refused or withdrawn consent stops the processing at the next event."
	switch {
	case anon:
		basis = "Legitimate interest (Art. 6(1)(f)) in counting visits without identifying anyone; the operator must confirm it for their sites."
	case purpose == string(consent.Necessary):
		basis = "Legitimate interest (Art. 6(1)(f)) or the performance of the service asked for; the operator must confirm it."
	}
	a.Purposes = section("Purposes of the processing", "Finalité(s) du traitement effectué", "30(1)(b)", Purposes{
		Main:       section("Main purpose", "Finalité principale", "", description),
		Sub:        section("Sub-purposes", "Sous-finalités", "", sub),
		LegalBasis: section("Legal basis", "Base légale", "6", basis),
	})

	// (c) data subjects and categories of data
	subjects := []string{"Visitors of the sites " + strings.Join(sites, ", ") + " (first-party tracking)"}
	if !anon && !necessary {
		subjects = append(subjects, "Users the sites identify (identify calls with a userId)")
		if purpose == string(consent.Marketing) {
			subjects = append(subjects, "Recipients of the marketing e-mails prepared with Vigie")
		}
	}
	a.DataSubjects = section("Categories of data subjects", "Catégories de personnes concernées", "30(1)(c)", subjects)
	a.DataCategories = section("Categories of personal data", "Catégories de données personnelles concernées", "30(1)(c)", dataCategories(in, purpose))
	a.SensitiveData = section("Sensitive data (Art. 9, 10)", "Des données sensibles sont-elles traitées ?", "9, 10",
		sensitiveStatement(cfg))

	// (d) recipients, (e) transfers
	recips := recipients(in, purpose)
	a.Recipients = section("Categories of recipients", "Catégories de destinataires des données (internes, organismes externes, sous-traitants)", "30(1)(d)", recips)
	a.Transfers = section("Transfers outside the EU", "Transferts des données hors UE (destinataire, pays, type de garanties)", "30(1)(e)", transfers(cfg, recips))

	// (f) time limits
	a.Retention = section("Time limits for erasure", "Durées de conservation (délais d'effacement) des catégories de données", "30(1)(f)", retention(cfg, purpose))

	// (g) security measures
	a.Security = section("Technical and organisational security measures", "Mesures de sécurité", "30(1)(g), 32(1)", security(cfg))
	return a
}

// pluginsFor are the plugins that receive data of purpose: those that
// declare it, and those that declare no purpose by what they serve:
// enrichers get every stored event (anonymous ones included), segmenters
// the events of profile purposes, syncers every pseudonymous event's
// identify and segment changes. Only enrichers see anonymous events (and
// events granting only necessary, which are anonymous).
func pluginsFor(ps []Plugin, cfg config.Config, purpose string) []Plugin {
	anon := purpose == config.RetentionAnonymous || purpose == string(consent.Necessary)
	var out []Plugin
	for _, p := range ps {
		m := p.Manifest
		switch {
		case m == nil:
			out = append(out, p)
		case len(m.Purposes) > 0:
			if !anon && slices.Contains(m.Purposes, purpose) {
				out = append(out, p)
			}
		case slices.Contains(m.Kinds, sdk.KindEnricher),
			!anon && slices.Contains(m.Kinds, sdk.KindSyncer),
			!anon && slices.Contains(m.Kinds, sdk.KindSegmenter) && profiled(cfg, purpose):
			out = append(out, p)
		}
	}
	return out
}

func dataCategories(in Input, purpose string) []DataCategory {
	cfg := in.Config
	if purpose == config.RetentionAnonymous || purpose == string(consent.Necessary) {
		return []DataCategory{
			{"Connection data", "Données de connexion (adresses IP, journaux, identifiants des terminaux…)",
				"No identifier of any kind; the IP address truncated to its /24 (IPv4) or /48 (IPv6) network, device class, time."},
			{"Personal life (browsing)", "Vie personnelle (habitudes de vie…)",
				"Event name, URL path and referrer host only; no properties, traits, title or full URL."},
		}
	}
	out := []DataCategory{
		{"Identity and identification", "État civil, identité, données d'identification",
			"Identifiers (anonymousId, userId, the vigie_id cookie, messageId) kept only as HMAC-SHA256 pseudonyms; traits a site sends with identify (e-mail, name, phone…) kept encrypted in the identity vault, given only to plugins with contacts.resolve for subjects whose consent grants the plugin's purposes."},
		{"Connection data", "Données de connexion (adresses IP, journaux, identifiants des terminaux…)",
			"IP address truncated to /24 (IPv4) or /48 (IPv6); browser, major version, OS and device class from the user agent; times of the events."},
		{"Personal life (browsing and usage)", "Vie personnelle (habitudes de vie…)",
			"Pages viewed (URL scrubbed to the allowed query parameters), referrers, events and their properties (personal-data keys removed), campaign parameters."},
	}
	if profiled(cfg, purpose) {
		out = append(out, DataCategory{"Profile", "Vie personnelle (profil, centres d'intérêt)",
			"Per subject: first and last seen, hourly activity counters for 30 days, lead score, segment membership and its changes."})
	}
	if purpose == string(consent.Marketing) {
		out = append(out, DataCategory{"E-mail engagement", "Vie personnelle (habitudes de vie…)",
			"Opens and clicks of marketing e-mails, with the class of who fetched them (person, privacy proxy, scanner), for recipients whose consent grants marketing; others are counted per campaign only."})
	}
	if c, ok := profilingCategory(cfg, purpose); ok {
		out = append(out, c)
	}
	if geoIP(cfg) {
		out = append(out, DataCategory{"Location", "Données de localisation",
			"Country, region, city and time zone derived from the truncated IP address by the geoip plugin."})
	}
	return out
}

// geoIP reports whether the geoip plugin runs with a database (without
// one it passes events through).
func geoIP(cfg config.Config) bool {
	for _, p := range cfg.Plugins {
		if p.Name == "geoip" && p.Path == "" && !p.Disabled {
			if db, _ := p.Config["database"].(string); db != "" {
				return true
			}
		}
	}
	return false
}

func recipients(in Input, purpose string) []Recipient {
	out := []Recipient{{
		Name: "Vigie (this server)", Kind: Internal,
		Receives: "Everything above: stored in its data directory (Badger) and carried on its NATS JetStream bus (" + busWhere(in.Config) + ").",
	}}
	for _, p := range pluginsFor(in.Plugins, in.Config, purpose) {
		out = append(out, pluginRecipient(p, in.Config))
	}
	for _, r := range in.Recipients {
		if len(r.Purposes) == 0 || slices.Contains(r.Purposes, purpose) {
			out = append(out, r)
		}
	}
	return out
}

func busWhere(cfg config.Config) string {
	if cfg.NATS.URL == "" {
		return "embedded, in the same process"
	}
	return "an external NATS server named by nats.url"
}

// pluginRecipient says what plugin p receives, from its manifest.
func pluginRecipient(p Plugin, cfg config.Config) Recipient {
	kind := "external plugin"
	if p.Builtin {
		kind = "built-in plugin"
	}
	r := Recipient{Name: p.Name + " (" + kind + ")", Kind: Internal}
	m := p.Manifest
	if m == nil {
		r.Receives = "Unknown: the plugin's manifest was not read."
		return r
	}
	r.Purposes = m.Purposes
	var got []string
	for _, k := range m.Kinds {
		switch k {
		case sdk.KindEnricher:
			got = append(got, "every stored event it filters (pseudonymous identifiers, no contact details), to add fields")
		case sdk.KindSegmenter:
			got = append(got, "pseudonymous events granting a profile purpose ("+joinPurposes(cfg.PluginRuntime.ProfilePurposes)+") with the subject's profile")
		case sdk.KindSyncer:
			got = append(got, "segment entries and exits, identify events and privacy events (consent changes, erasures)")
		case sdk.KindPrivacy:
			if !slices.Contains(m.Kinds, sdk.KindSyncer) {
				got = append(got, "privacy events (consent changes, objections, restrictions, erasures), without contact details")
			}
		}
	}
	if m.Has(sdk.CapContactsResolve) {
		r.PersonalData = true
		got = append(got, "contact details from the identity vault (e-mail, phone, name, other vaulted traits) for subjects whose consent grants "+strings.Join(m.Purposes, ", ")+"; each resolution is in the audit trail")
	}
	if m.Has(sdk.CapProfilesRead) {
		got = append(got, "profiles on request")
	}
	if m.Has(sdk.CapKV) {
		got = append(got, "its own key-value data in Vigie's store, kept at most the longest retention")
	}
	if len(m.Filter.Sites) > 0 {
		got = append(got, "sites: "+strings.Join(m.Filter.Sites, ", "))
	}
	r.Receives = strings.Join(got, "; ") + "."
	return r
}

func joinPurposes(ps []consent.Purpose) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

func transfers(cfg config.Config, recips []Recipient) Transfers {
	t := Transfers{}
	for _, r := range recips {
		if r.Country != "" && !inEEA(r.Country) {
			g := r.Guarantee
			if g == "" {
				g = "none declared: to complete"
			}
			t.List = append(t.List, Transfer{Recipient: r.Name, Country: strings.ToUpper(r.Country), Guarantee: g})
		}
	}
	t.Any = len(t.List) > 0
	switch {
	case t.Any:
		t.Statement = "Data of this activity leaves the European Economic Area for the recipients listed."
	case cfg.NATS.URL != "":
		t.Statement = "None by Vigie to a country outside the EEA declared here; the data stays on this server and on the NATS servers of nats.url, whose location the operator must confirm."
	default:
		t.Statement = "None by Vigie: the data stays on this server. A plugin or destination that sends data elsewhere must be declared with its country."
	}
	return t
}

// days is d in whole days.
func days(d time.Duration) int { return int(d / (24 * time.Hour)) }

func period(data string, d time.Duration, setting string) RetentionPeriod {
	if d <= 0 {
		return RetentionPeriod{Data: data, Duration: "kept until deleted", Setting: setting}
	}
	return RetentionPeriod{Data: data, Duration: fmt.Sprintf("%d days", days(d)), Days: days(d), Setting: setting}
}

func retention(cfg config.Config, purpose string) []RetentionPeriod {
	var out []RetentionPeriod
	ev := cfg.RetentionOf(purpose)
	switch purpose {
	case config.RetentionAnonymous:
		out = append(out, period("Anonymous events", ev, "retention.anonymous"))
	case string(consent.Necessary):
		out = append(out,
			period("Events granting only necessary (anonymous events)", cfg.RetentionOf(config.RetentionAnonymous), "retention.anonymous"),
			period("Events granting necessary with other purposes: the longest of their purposes, at least this", ev, "retention.necessary"))
	default:
		out = append(out,
			period("Events granting "+purpose+" (an event granting several purposes is kept for the longest of them), with their subject index entries and vaulted traits", ev, "retention."+purpose),
			period("Consent choices (consent ledger)", storage.ConsentTTL, ""),
			period("messageId, kept as an HMAC for deduplication", time.Duration(cfg.Storage.DedupWindow), "storage.dedup_window"),
			period("Imported records granting "+purpose+" (from each row's time), with the keyed MAC of their natural key", cfg.RetentionOf(config.RetentionImported), "retention.imported"),
		)
		if profiled(cfg, purpose) {
			out = append(out,
				period("Profiles, after the subject's last event", time.Duration(cfg.PluginRuntime.ProfileTTL), "plugin_runtime.profile_ttl"),
				period("Segment change log", 30*24*time.Hour, ""),
			)
		}
	}
	out = append(out,
		period("Messages on the NATS streams (the bus)", time.Duration(cfg.NATS.MaxAge), "nats.max_age"),
		period("Plugins' own key-value data (at most)", cfg.LongestRetention(), ""),
		period("Audit trail (privacy requests, contact resolutions)", cfg.RetentionOf(config.RetentionAudit), "retention.audit"),
		period("Completed privacy requests (receipts without identifiers)", cfg.RetentionOf(config.RetentionRequests), "retention.requests"),
		period("The console overview's aggregates (hourly and daily counts, distinct-visitor sketches, no subject), after their hour or day", cfg.RetentionOf(config.RetentionRollups), "retention.rollups"),
	)
	return out
}

func security(cfg config.Config) []SecurityMeasure {
	tlsNATS := cfg.NATS.URL != "" && (cfg.NATS.TLSCA != "" || cfg.NATS.TLSCert != "")
	natsDetail := "The embedded NATS server listens on no port (in-process)."
	switch {
	case cfg.NATS.URL == "":
		if cfg.NATS.Listen != "" {
			natsDetail = "The embedded NATS server also listens on nats.listen (" + cfg.NATS.Listen + "), without TLS: keep it on a private network."
		}
	case tlsNATS:
		natsDetail = "The connection to the external NATS server uses TLS (nats.tls_*)."
	default:
		natsDetail = "The connection to the external NATS server is not configured with TLS (nats.tls_*): keep it on a private network."
	}
	custody := "The master key sealing the keyring comes from outside the data directory (environment, key file or command)"
	if cfg.Production {
		custody += "; production: true refuses a key inside data_dir, a readable key file or a missing key."
	} else {
		custody += "; production: true is not set, so a trial key may be in use: set it for production."
	}
	return []SecurityMeasure{
		{"User access control", "Contrôle d'accès des utilisateurs", true,
			"The admin API needs a bearer token stored only as a SHA-256 hash, with a role; failed authentications are rate-limited per client network. Ingestion needs a site's write key and, from browsers, an allowed Origin."},
		{"Traceability", "Mesures de traçabilité", true,
			"An audit trail records every privacy request and every contact resolution by a plugin (who, when, which fields, never the values), readable at GET /admin/v1/audit and kept retention.audit."},
		{"Software protection", "Mesures de protection des logiciels", true,
			"Plugins run as separate processes with an empty environment, external binaries checked against their SHA-256, gRPC with mutual TLS; capabilities declared in their manifest are enforced."},
		{"Data backup", "Sauvegarde des données", false,
			"Not done by Vigie: back up the data directory together with keyring.json; the master key is kept and backed up separately."},
		{"Encryption", "Chiffrement des données", true,
			"Vaulted traits are encrypted with AES-256-GCM under a data key per subject (erasure shreds the key); the keyring is sealed with AES-256-GCM under the master key. " + natsDetail + " HTTPS is terminated in front of Vigie (public_url)."},
		{"Processor control", "Contrôle des sous-traitants", false,
			"The operator's to complete: contracts (Art. 28) with the processors listed as recipients."},
		{"Other measures", "Autres mesures", true,
			"Pseudonymization: identifiers replaced by HMAC-SHA256 pseudonyms under keys kept in the sealed keyring. Minimisation: IP truncation, user agent reduced, URLs scrubbed, personal-data properties removed. " +
				custody + " Logs hold no personal data. Every category of data has a retention enforced by Badger TTLs and a daily purge; the bus keeps messages at most nats.max_age."},
	}
}
