// Package store is berth's metadata store: JSON records in bbolt buckets.
// Each room (images, pods, containers) names its own buckets; a write
// transaction commits every change or none, which is what makes a crash at
// any point of a pull or a pod start leave consistent metadata.
package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/runtime/errdefs"
)

// DB is an open metadata database.
type DB struct {
	db *bolt.DB
	// group queues the Group calls that arrive while one commits.
	group struct {
		sync.Mutex
		pending []*groupCall
		running bool
	}
}

// Open opens (creating if needed) the database at path. It fails quickly
// when another process holds it, which means another berthd is running.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open metadata %s (is another berthd running?): %w", path, err)
	}
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Update runs fn in a read-write transaction.
func (d *DB) Update(fn func(*Tx) error) error {
	return d.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// Group runs fn in a read-write transaction that it may share with other
// Group calls: the calls that arrive while a transaction commits are
// committed together in the next one (one fsync for all of them, where
// Update would queue each behind the other's). A call alone commits at
// once, without waiting for company (bbolt's Batch waits up to 10 ms),
// and returns only once its changes are durable, as Update does.
//
// fn must only change the transaction (it may run more than once: when
// the shared transaction fails, each of its calls runs again alone, and
// gets its own outcome).
func (d *DB) Group(fn func(*Tx) error) error {
	c := &groupCall{fn: fn, done: make(chan groupResult, 1)}
	g := &d.group
	g.Lock()
	g.pending = append(g.pending, c)
	lead := !g.running
	g.running = true
	g.Unlock()
	if !lead {
		r := <-c.done
		if !r.lead {
			return r.err
		}
	}
	// This call commits what is pending (itself included), then hands
	// the next group to the first call that arrived meanwhile.
	g.Lock()
	batch := g.pending
	g.pending = nil
	g.Unlock()
	d.commitGroup(batch)
	g.Lock()
	if len(g.pending) > 0 {
		g.pending[0].done <- groupResult{lead: true}
	} else {
		g.running = false
	}
	g.Unlock()
	return (<-c.done).err
}

type groupCall struct {
	fn   func(*Tx) error
	done chan groupResult
}

// groupResult is a Group call's outcome, or (lead) its turn to commit the
// calls pending.
type groupResult struct {
	err  error
	lead bool
}

func (d *DB) commitGroup(batch []*groupCall) {
	err := d.updateRecovered(func(tx *Tx) error {
		for _, c := range batch {
			if err := c.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	for _, c := range batch {
		if err != nil && len(batch) > 1 {
			// One call failed (or the commit did): each runs alone, so
			// that one call's error is no other's.
			c.done <- groupResult{err: d.updateRecovered(c.fn)}
			continue
		}
		c.done <- groupResult{err: err}
	}
}

// updateRecovered is Update with a panic (in fn or in bbolt, which rolls
// the transaction back) turned into its error: a panic must not leave
// the calls of a group, and every later Group call, waiting for ever.
func (d *DB) updateRecovered(fn func(*Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in a grouped transaction: %v", r)
		}
	}()
	return d.Update(fn)
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(*Tx) error) error {
	return d.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// Tx is a transaction.
type Tx struct{ tx *bolt.Tx }

func (t *Tx) bucket(name string, create bool) (*bolt.Bucket, error) {
	if b := t.tx.Bucket([]byte(name)); b != nil {
		return b, nil
	}
	if !create || !t.tx.Writable() {
		return nil, nil
	}
	return t.tx.CreateBucket([]byte(name))
}

// Get decodes the record bucket/key into v, or returns ErrNotFound.
func (t *Tx) Get(bucket, key string, v any) error {
	b, _ := t.bucket(bucket, false)
	var raw []byte
	if b != nil {
		raw = b.Get([]byte(key))
	}
	if raw == nil {
		return errdefs.NotFound("%s %q", bucket, key)
	}
	return json.Unmarshal(raw, v)
}

// Has reports whether bucket/key exists.
func (t *Tx) Has(bucket, key string) bool {
	b, _ := t.bucket(bucket, false)
	return b != nil && b.Get([]byte(key)) != nil
}

// Put stores v as JSON at bucket/key.
func (t *Tx) Put(bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b, err := t.bucket(bucket, true)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

// Delete removes bucket/key; a missing key is not an error.
func (t *Tx) Delete(bucket, key string) error {
	b, _ := t.bucket(bucket, false)
	if b == nil {
		return nil
	}
	return b.Delete([]byte(key))
}

// NextSequence returns the next value of bucket's sequence, creating the
// bucket if needed: a number never handed out before in this database
// (once the transaction commits).
func (t *Tx) NextSequence(bucket string) (uint64, error) {
	b, err := t.bucket(bucket, true)
	if err != nil {
		return 0, err
	}
	if b == nil {
		return 0, fmt.Errorf("sequence of %s: read-only transaction", bucket)
	}
	return b.NextSequence()
}

// Keys lists the keys of bucket in order.
func (t *Tx) Keys(bucket string) []string {
	b, _ := t.bucket(bucket, false)
	if b == nil {
		return nil
	}
	var keys []string
	_ = b.ForEach(func(k, _ []byte) error {
		keys = append(keys, string(k))
		return nil
	})
	return keys
}

// All decodes every record of bucket, in key order.
func All[T any](t *Tx, bucket string) ([]T, error) {
	b, _ := t.bucket(bucket, false)
	if b == nil {
		return nil, nil
	}
	var out []T
	err := b.ForEach(func(k, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("%s %q: %w", bucket, k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
