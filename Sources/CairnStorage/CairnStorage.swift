// CairnStorage: a member's durable state on disk.
//
// - `WriteAheadLog`: Raft entries, hard state and snapshot markers as
//   CRC-32C-checked records in preallocated segment files; group commit
//   (`append` many, `sync` once; acknowledge only after `sync`); torn-tail
//   repair on open; release of segments a snapshot covers; a `LOCK` file
//   (flock) keeps a second process out of the directory.
// - `SnapshotStore`: snapshot files written atomically (temp, fsync, rename,
//   directory fsync), whole (`save`) or in chunks (`SnapshotWriter`), read
//   whole (`loadLatest`) or in chunks (`SnapshotReader`), verified on load,
//   newest N kept, fallback to the previous one when the newest is damaged.
// - `FileSystem`: the seam. `POSIXFileSystem` is the disk;
//   `SimulatedFileSystem` loses unsynced data on `crash()` and injects torn
//   writes, failed fsyncs and bit flips, scheduled or at seeded random
//   rates, deterministically.
//
// This module does I/O (Glibc); the pure core modules must not import it.
// The member shell and the simulator do.
//
// Restart order for the member shell: `SnapshotStore.loadLatest()`, then
// `WriteAheadLog.open(..., snapshotIndex: loaded?.index)`; restore the
// snapshot, then apply `recovery.entries` (all above that index); log
// `recovery.tailRepair` and `loaded.skipped` when present.
// Save order: `SnapshotStore.save` (or `beginSnapshot` ... `commit`), then
// append a `.snapshotMarker` and `sync`, then
// `releaseSegments(upTo: store.oldestRetainedIndex())`, so a fallback to the
// older retained snapshot still finds its following entries.
// Acknowledge a write only after the `sync` that covers it returned.
