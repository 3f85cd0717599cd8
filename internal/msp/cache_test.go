package msp

import (
	"fmt"
	"testing"
)

func TestIdentityCacheBounded(t *testing.T) {
	c := newIdentityCache(3)
	ids := make([]*Identity, 10)
	for i := range ids {
		ids[i] = &Identity{serialized: []byte(fmt.Sprint("id", i))}
		c.put(ids[i])
		// Keep id0 hot: CLOCK should give it second chances.
		c.get(ids[0].serialized)
	}
	if n := c.len(); n != 3 {
		t.Fatalf("len = %d, want 3", n)
	}
	if _, ok := c.get(ids[0].serialized); !ok {
		t.Fatal("frequently used entry was evicted")
	}
	if _, ok := c.get(ids[9].serialized); !ok {
		t.Fatal("last inserted entry missing")
	}
	off := newIdentityCache(0)
	off.put(ids[0])
	if _, ok := off.get(ids[0].serialized); ok {
		t.Fatal("disabled cache returned a hit")
	}
}
