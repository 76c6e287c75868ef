package pod

import "github.com/berthrt/berth/runtime/store"

// undo collects rollback steps of a half-done operation.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }

func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

func (m *Manager) deleteRecord(bucket, id string) {
	if err := m.db.Group(func(tx *store.Tx) error { return tx.Delete(bucket, id) }); err != nil {
		m.log.Warn("delete record", "bucket", bucket, "id", id, "err", err)
	}
}
