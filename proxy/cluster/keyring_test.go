package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/vigie-dev/vigie/internal/streams"
)

// TestSharedKeyring: the first Publish wins, a second is ErrKeyringTaken;
// Update is a compare-and-set on the revision read.
func TestSharedKeyring(t *testing.T) {
	ctx := context.Background()
	js := startBareJS(t)
	if err := streams.NewDeclarer(streams.Settings{}).WithBuckets(streams.BucketKeyring).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	sk := SharedKeyring{JS: fixedJS{js}}
	if _, _, err := sk.Get(ctx); !errors.Is(err, ErrNoSharedKeyring) {
		t.Fatalf("empty bucket: %v, want ErrNoSharedKeyring", err)
	}
	if err := sk.Publish(ctx, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := sk.Publish(ctx, []byte("second")); !errors.Is(err, ErrKeyringTaken) {
		t.Fatalf("second publish: %v, want ErrKeyringTaken", err)
	}
	b, rev, err := sk.Get(ctx)
	if err != nil || string(b) != "first" {
		t.Fatalf("get: %q %v", b, err)
	}
	if err := sk.Update(ctx, []byte("rotated"), rev); err != nil {
		t.Fatal(err)
	}
	if err := sk.Update(ctx, []byte("stale"), rev); !errors.Is(err, ErrKeyringChanged) {
		t.Fatalf("update on a stale revision: %v, want ErrKeyringChanged", err)
	}
	if b, _, _ := sk.Get(ctx); string(b) != "rotated" {
		t.Fatalf("after a stale update the bucket holds %q", b)
	}
}
