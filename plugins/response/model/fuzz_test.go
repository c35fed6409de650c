package model

import (
	"bytes"
	"testing"
)

// FuzzLoad: no input makes Load panic or loop, a failed Load changes
// nothing, and whatever loads encodes to a canonical form that loads back
// to the same bytes.
func FuzzLoad(f *testing.F) {
	m := mustNew(f, stateConfig())
	populate(f, m, 12)
	valid, _ := m.MarshalBinary()
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(magic + "\x01\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := mustNew(t, stateConfig())
		expose(t, m, Exposure{Subject: "kept", MessageType: "msg-0", At: t0})
		before, _ := m.MarshalBinary()
		if err := m.Load(data); err != nil {
			if after, _ := m.MarshalBinary(); !bytes.Equal(before, after) {
				t.Fatalf("failed Load (%v) changed the model", err)
			}
			return
		}
		once, _ := m.MarshalBinary()
		again := mustNew(t, stateConfig())
		if err := again.Load(once); err != nil {
			t.Fatalf("state encoded from a loaded one does not load: %v", err)
		}
		if twice, _ := again.MarshalBinary(); !bytes.Equal(once, twice) {
			t.Fatal("encoding is not stable across a round trip")
		}
		_ = m.Table(days(30)) // estimates of any loaded state compute without panicking
	})
}
