package statedb

import (
	"bytes"
	"testing"
)

func digestOf(t *testing.T, writes ...[]Write) []byte {
	t.Helper()
	db, err := Open(Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, w := range writes {
		if err := db.Apply(&Batch{Writes: w}, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := db.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	d, _, err := snap.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func w(ns, key, val string, block, tx uint64) Write {
	return Write{Key: CompositeKey{Namespace: ns, Key: key}, Value: []byte(val), Version: Version{BlockNum: block, TxNum: tx}}
}

// TestDigestIsDeterministic: equal committed states have equal digests, and
// any difference in value, version or key set changes it.
func TestDigestIsDeterministic(t *testing.T) {
	base := digestOf(t, []Write{w("cc", "a", "1", 1, 0), w("cc", "b", "2", 1, 1)})
	if again := digestOf(t, []Write{w("cc", "b", "2", 1, 1), w("cc", "a", "1", 1, 0)}); !bytes.Equal(base, again) {
		t.Fatal("same state, different digest")
	}
	for name, other := range map[string][]Write{
		"value":   {w("cc", "a", "1", 1, 0), w("cc", "b", "3", 1, 1)},
		"version": {w("cc", "a", "1", 1, 0), w("cc", "b", "2", 2, 1)},
		"key":     {w("cc", "a", "1", 1, 0)},
		"ns":      {w("cc", "a", "1", 1, 0), w("cd", "b", "2", 1, 1)},
	} {
		if bytes.Equal(base, digestOf(t, other)) {
			t.Errorf("a different %s gives the same digest", name)
		}
	}
}
