package store

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/berthrt/berth/runtime/errdefs"
)

type rec struct {
	Name string
	N    int
}

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error {
		if err := tx.Put("things", "b", rec{"b", 2}); err != nil {
			return err
		}
		return tx.Put("things", "a", rec{"a", 1})
	}); err != nil {
		t.Fatal(err)
	}
	// A failed transaction leaves nothing behind.
	boom := errors.New("boom")
	if err := db.Update(func(tx *Tx) error {
		_ = tx.Put("things", "c", rec{"c", 3})
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("want boom, got %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *Tx) error {
		all, err := All[rec](tx, "things")
		if err != nil || len(all) != 2 || all[0].Name != "a" || all[1].N != 2 {
			t.Errorf("All = %v, %v", all, err)
		}
		var r rec
		if err := tx.Get("things", "c", &r); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("rolled-back record visible: %v", err)
		}
		if err := tx.Get("nobucket", "x", &r); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("missing bucket: %v", err)
		}
		if !tx.Has("things", "a") || tx.Has("things", "zz") {
			t.Error("Has wrong")
		}
		return nil
	})
	if _, err := Open(path); err == nil {
		t.Error("second Open of a held database must fail")
	}
}
