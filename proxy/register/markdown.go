package register

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// JSON is the register as indented JSON.
func (r Register) JSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Markdown is the register as a Markdown document: the organization, then
// one fiche per activity, each heading and field named in English with
// the CNIL's French label and the article in brackets.
func (r Register) Markdown() []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	head := func(level int, label, fr, article string) {
		w("\n%s %s (%s)", strings.Repeat("#", level), label, fr)
		if article != "" {
			w(" — Art. %s", article)
		}
		w("\n\n")
	}
	w("# %s (%s)\n\n", r.Title, r.TitleFR)
	w("Generated %s", r.GeneratedAt.Format("2006-01-02 15:04 MST"))
	if r.Generator != "" {
		w(" by %s", r.Generator)
	}
	w(" from the configuration and the plugins' manifests.\n")
	if len(r.ToComplete) > 0 {
		w("\n**To complete (à compléter):**\n\n")
		for _, t := range r.ToComplete {
			w("- %s\n", t)
		}
	}

	o := r.Organization
	w("\n## Organization (Organisme)\n")
	partySection := func(s Section[*Party]) {
		head(3, s.Label, s.LabelFR, s.Article)
		if s.Value == nil {
			w("None designated (néant).\n")
			return
		}
		party(&b, *s.Value)
	}
	head(3, o.Controller.Label, o.Controller.LabelFR, o.Controller.Article)
	party(&b, o.Controller.Value)
	partySection(o.Representative)
	partySection(o.DPO)
	head(3, o.JointControllers.Label, o.JointControllers.LabelFR, o.JointControllers.Article)
	if len(o.JointControllers.Value) == 0 {
		w("None (néant).\n")
	}
	for _, p := range o.JointControllers.Value {
		party(&b, p)
		w("\n")
	}

	for _, a := range r.Activities {
		w("\n## %s (%s): %s\n\n", a.Designation.Label, a.Designation.LabelFR, a.Designation.Value)
		w("- %s (%s): `%s`\n", a.Reference.Label, a.Reference.LabelFR, a.Reference.Value)
		w("- %s (%s): %s\n", a.UpdatedAt.Label, a.UpdatedAt.LabelFR, a.UpdatedAt.Value)

		p := a.Purposes
		head(3, p.Label, p.LabelFR, p.Article)
		w("- %s (%s): %s\n", p.Value.Main.Label, p.Value.Main.LabelFR, p.Value.Main.Value)
		w("- %s (%s):\n", p.Value.Sub.Label, p.Value.Sub.LabelFR)
		for _, s := range p.Value.Sub.Value {
			w("  - %s\n", s)
		}
		w("- %s (%s, Art. %s): %s\n", p.Value.LegalBasis.Label, p.Value.LegalBasis.LabelFR, p.Value.LegalBasis.Article, p.Value.LegalBasis.Value)

		head(3, a.DataSubjects.Label, a.DataSubjects.LabelFR, a.DataSubjects.Article)
		for _, s := range a.DataSubjects.Value {
			w("- %s\n", s)
		}
		head(3, a.DataCategories.Label, a.DataCategories.LabelFR, a.DataCategories.Article)
		w("| Category (Catégorie) | Data kept |\n|---|---|\n")
		for _, c := range a.DataCategories.Value {
			w("| %s (%s) | %s |\n", cell(c.Category), cell(c.CategoryFR), cell(c.Data))
		}
		w("\n%s (%s): %s\n", a.SensitiveData.Label, a.SensitiveData.LabelFR, a.SensitiveData.Value)

		head(3, a.Recipients.Label, a.Recipients.LabelFR, a.Recipients.Article)
		w("| Recipient (Destinataire) | Kind | Receives | Directly identifying | Purposes | Country |\n|---|---|---|---|---|---|\n")
		for _, rc := range a.Recipients.Value {
			ident := "no"
			if rc.PersonalData {
				ident = "yes"
			}
			purposes := strings.Join(rc.Purposes, ", ")
			if purposes == "" {
				purposes = "all"
			}
			w("| %s | %s | %s | %s | %s | %s |\n", cell(rc.Name), kindFR(rc.Kind), cell(rc.Receives), ident, cell(purposes), cell(rc.Country))
		}
		t := a.Transfers
		head(3, t.Label, t.LabelFR, t.Article)
		w("%s\n", t.Value.Statement)
		if len(t.Value.List) > 0 {
			w("\n| Recipient (Destinataire) | Country (Pays) | Guarantee (Type de garanties) |\n|---|---|---|\n")
			for _, x := range t.Value.List {
				w("| %s | %s | %s |\n", cell(x.Recipient), cell(x.Country), cell(x.Guarantee))
			}
		}
		head(3, a.Retention.Label, a.Retention.LabelFR, a.Retention.Article)
		w("| Data (Données) | Kept (Durée) | Setting |\n|---|---|---|\n")
		for _, rp := range a.Retention.Value {
			setting := ""
			if rp.Setting != "" {
				setting = "`" + rp.Setting + "`"
			}
			w("| %s | %s | %s |\n", cell(rp.Data), rp.Duration, setting)
		}
		head(3, a.Security.Label, a.Security.LabelFR, a.Security.Article)
		for _, m := range a.Security.Value {
			box := "[x]"
			if !m.Applied {
				box = "[ ]"
			}
			w("- %s **%s (%s)**: %s\n", box, m.Measure, m.MeasureFR, m.Detail)
		}
	}
	sc := r.SpecialCategories
	w("\n## %s (%s) — Art. %s\n\n", sc.Label, sc.LabelFR, sc.Article)
	w("| Category (Catégorie) | Art. | Site | Action | Effect | Layers | Sensitive paths |\n|---|---|---|---|---|---|---|\n")
	for _, c := range sc.Value {
		for _, h := range c.Sites {
			w("| %s | %s | %s | `%s` | %s | %s | %s |\n", cell(c.Label), c.Article, cell(h.Site), h.Action, cell(h.Effect),
				strings.Join(h.Layers, ", "), cell(strings.Join(h.SensitivePaths, ", ")))
		}
	}
	return []byte(b.String())
}

func party(b *strings.Builder, p Party) {
	name := p.Name
	if name == "" {
		name = "*(to complete / à compléter)*"
	}
	fmt.Fprintf(b, "- Name (Nom): %s\n", name)
	for _, f := range [][2]string{{"Address (Adresse)", p.Address}, {"Contact (Adresse de messagerie)", p.Contact}, {"Phone (Téléphone)", p.Phone}} {
		if f[1] != "" {
			fmt.Fprintf(b, "- %s: %s\n", f[0], f[1])
		}
	}
}

// kindFR names a recipient kind with the CNIL's column.
func kindFR(k string) string {
	switch k {
	case Internal:
		return "internal (destinataire interne)"
	case Processor:
		return "processor (sous-traitant)"
	case External:
		return "external (organisme externe)"
	}
	return cell(k)
}

// cell makes s safe in a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
