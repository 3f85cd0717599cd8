package msp

// Test hooks: the precomputed-key-table policy of Identity.Verify.
const (
	HotKeyVerifies = hotKeyVerifies
	MaxKeyTables   = maxKeyTables
)

// HasKeyTable reports whether id verifies through a precomputed key table.
func HasKeyTable(id *Identity) bool { return id.table.Load() != nil }

// KeyTablesInUse reports how many of its key tables an MSP has handed out.
func KeyTablesInUse(m *MSP) int { return int(m.keyTables.Load()) }
