package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestListProfilesPages(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	for i := range 7 {
		if _, _, err := s.ObserveEvent(ctx, pev(fmt.Sprint("e", i), fmt.Sprint("subj", i), "page", "/", profBase)); err != nil {
			t.Fatal(err)
		}
	}
	other := pev("o1", "subj9", "page", "/", profBase)
	other.Site = "other"
	if _, _, err := s.ObserveEvent(ctx, other); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for {
		page, err := s.ListProfiles(ctx, "site", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			if p.Site != "site" {
				t.Fatalf("profile of site %q listed", p.Site)
			}
			got = append(got, p.Subject)
		}
		after = page[len(page)-1].Subject
	}
	if fmt.Sprint(got) != "[subj0 subj1 subj2 subj3 subj4 subj5 subj6]" {
		t.Errorf("pages gave %v", got)
	}
}

func TestRequestContactsDropWithSubjects(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	if err := s.PutRequestContacts(ctx, "r1", s.SealSecret("r1", []byte(`[{"email":"a@example.org"}]`))); err != nil {
		t.Fatal(err)
	}
	v, err := s.RequestContacts(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s.OpenSecret("r1", v); err != nil || string(b) != `[{"email":"a@example.org"}]` {
		t.Fatalf("opened %q, %v", b, err)
	}
	if err := s.DropRequestSubjects(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestContacts(ctx, "r1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after the receipt: %v, want ErrNotFound", err)
	}
}

func TestResyncJob(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	if _, err := s.ResyncJob(ctx, "crm-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no job yet: %v", err)
	}
	if err := s.PutResyncJob(ctx, "crm-a", []byte(`{"run":"1"}`)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.ResyncJob(ctx, "crm-a"); err != nil || string(v) != `{"run":"1"}` {
		t.Errorf("job %q, %v", v, err)
	}
}
