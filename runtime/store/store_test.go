package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
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

func TestNextSequence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	next := func() (n uint64) {
		t.Helper()
		if err := db.Update(func(tx *Tx) error {
			n, err = tx.NextSequence("things")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if a, b := next(), next(); a != 1 || b != 2 {
		t.Fatalf("sequence %d, %d; want 1, 2", a, b)
	}
	// A rolled-back transaction hands its number out again; a reopened
	// database goes on where it stopped.
	_ = db.Update(func(tx *Tx) error {
		_, _ = tx.NextSequence("things")
		return errors.New("roll back")
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := next(); n != 3 {
		t.Fatalf("sequence after reopen %d, want 3", n)
	}
	if err := db.View(func(tx *Tx) error {
		_, err := tx.NextSequence("things")
		return err
	}); err == nil {
		t.Error("NextSequence in a read-only transaction succeeded")
	}
}

// Group calls made at once all commit, each gets its own outcome, and a
// failing one takes none of the others down with it.
func TestGroup(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	boom := errors.New("boom")
	const n = 64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Group(func(tx *Tx) error {
				if err := tx.Put("things", fmt.Sprintf("k%02d", i), rec{N: i}); err != nil {
					return err
				}
				if i%10 == 3 {
					return fmt.Errorf("call %d: %w", i, boom)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	_ = db.View(func(tx *Tx) error {
		for i := range n {
			failed := i%10 == 3
			if failed != errors.Is(errs[i], boom) {
				t.Errorf("call %d: err %v", i, errs[i])
			}
			if has := tx.Has("things", fmt.Sprintf("k%02d", i)); has == failed {
				t.Errorf("call %d (failed %v): record there: %v", i, failed, has)
			}
		}
		return nil
	})
	// Alone, and after the others: still commits.
	if err := db.Group(func(tx *Tx) error { return tx.Delete("things", "k00") }); err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *Tx) error {
		if tx.Has("things", "k00") {
			t.Error("k00 not deleted")
		}
		return nil
	})
}

// A Group call that panics gets an error; the calls grouped with it, and
// those after it, still commit.
func TestGroupPanic(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Group(func(tx *Tx) error {
				if i == 3 {
					panic("boom")
				}
				return tx.Put("things", fmt.Sprint(i), rec{N: i})
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 3) != (err != nil) {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if err := db.Group(func(tx *Tx) error { return tx.Put("things", "after", rec{}) }); err != nil {
		t.Fatal(err)
	}
}
