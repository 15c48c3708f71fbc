import CairnCore
import DequeModule

/// The multi-version key space: every key's versions by revision, ranges at
/// any retained revision, writes that each make one new revision, compaction,
/// and the event history watchers catch up from.
///
/// A value driven by explicit calls; it performs no I/O, reads no clock and
/// knows nothing of leases beyond the `isLeaseGranted` predicate callers pass.
///
/// Properties:
/// 1. `currentRevision` starts at 1 with no keys; every write that changes
///    something makes exactly one new main revision, so the first write of an
///    empty store is at revision 2.
/// 2. `compactedRevision` starts at -1 (never compacted) and only increases;
///    reads below it fail with `compacted`, reads above `currentRevision` with
///    `futureRevision`.
/// 3. `history` holds (as records, see `EventHistory`) the events of every
///    main revision from `historyFirstRevision` through `currentRevision`,
///    contiguous, oldest first; after compaction at C it starts at C (deletes
///    made at C are gone, as in etcd, whose compaction drops tombstones at C).
/// 4. `sortedKeys` holds exactly the keys of `index`, in key order.
public struct MVCCStore: Sendable {
    /// Limits on requests, named as etcd's flags.
    public struct Limits: Hashable, Sendable {
        /// etcd's `--max-txn-ops`: operations per txn branch (and compares).
        public var txnOperationsMax: Int

        public init(txnOperationsMax: Int = 128) {
            self.txnOperationsMax = txnOperationsMax
        }
    }

    public var limits: Limits
    public internal(set) var currentRevision: Int64 = 1
    public internal(set) var compactedRevision: Int64 = -1

    var index: [Key: KeyIndex] = [:]
    var sortedKeys = SortedKeySet()
    var values: [Revision: KeyValue] = [:]
    var history = EventHistory()
    var historyFirstRevision: Int64 { history.firstRevision }

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// How many keys are live at the current revision, kept up to date by
    /// every put and delete: Status and the metrics read it on the write
    /// path, where walking the index would cost O(keys) per request.
    public internal(set) var liveKeyCount = 0

    // MARK: reading

    /// The version of `key` live at main revision `revision`, if any.
    func keyValue(_ key: Key, at revision: Int64) -> KeyValue? {
        guard let found = index[key]?.get(at: revision) else { return nil }
        return value(at: found.modified)
    }

    /// Visits the versions live at `revision` in `range`, in key order, until
    /// `visit` returns false.
    func scan(_ range: KeyRange, at revision: Int64, _ visit: (KeyValue) -> Bool) {
        scanRevisions(range, at: revision) { _, stored in visit(value(at: stored)) }
    }

    /// Visits the keys live at `revision` in `range`, in key order, with the
    /// revision of their live version, until `visit` returns false. Cheaper
    /// than `scan` when most values are not needed (counting).
    func scanRevisions(_ range: KeyRange, at revision: Int64, _ visit: (Key, Revision) -> Bool) {
        if case .single(let key) = range {
            if let found = index[key]?.get(at: revision) { _ = visit(key, found.modified) }
            return
        }
        sortedKeys.forEach(from: range.start) { key in
            if range.isPast(key) { return false }
            guard let found = index[key]?.get(at: revision) else { return true }
            return visit(key, found.modified)
        }
    }

    /// The stored version at `revision`, which the index names.
    func value(at revision: Revision) -> KeyValue {
        guard let keyValue = values[revision] else {
            preconditionFailure("the index names \(revision) without a value")
        }
        return keyValue
    }

    /// etcd's storage-level range: the revision checks, then at most `limit`
    /// versions (0 = all) and the total count of keys in the range.
    /// `current` is the revision the reader sees (a txn that wrote sees its
    /// own next revision).
    func rangeKeys(
        _ range: KeyRange, revision requested: Int64, current: Int64, limit: Int64, countOnly: Bool
    ) throws(CairnError) -> (keyValues: [KeyValue], count: Int64) {
        if requested > current { throw .futureRevision }
        let revision = requested <= 0 ? current : requested
        if revision < compactedRevision { throw .compacted }
        var keyValues: [KeyValue] = []
        var count: Int64 = 0
        // Every key as it is now: the count is kept (`liveKeyCount`), so the
        // walk stops once the versions to return are in, instead of visiting
        // the whole key space (etcdctl's `get "" --from-key --limit N`).
        let countIsKept = range == .all && revision == current
        if countIsKept && countOnly { return ([], Int64(liveKeyCount)) }
        scanRevisions(range, at: revision) { _, stored in
            count += 1
            if !countOnly && (limit <= 0 || Int64(keyValues.count) < limit) {
                keyValues.append(value(at: stored))
            }
            return !(countIsKept && limit > 0 && Int64(keyValues.count) >= limit)
        }
        return (keyValues, countIsKept ? Int64(liveKeyCount) : count)
    }

    // MARK: writing

    /// One write in progress: the changes made so far at main revision
    /// `beginRevision + 1`. The index is updated as changes are made, so later
    /// operations of the same txn read them (etcd's read-your-writes).
    struct Write {
        let beginRevision: Int64
        var events: [Event] = []

        /// The revision readers inside this write see.
        var readRevision: Int64 { events.isEmpty ? beginRevision : beginRevision + 1 }
        var revision: Int64 { beginRevision + 1 }
    }

    /// Records a put of `key` in `write` and returns the previous version.
    @discardableResult
    mutating func put(_ key: Key, value: [UInt8], lease: LeaseID, in write: inout Write) -> KeyValue? {
        let revision = Revision(main: write.revision, sub: Int64(write.events.count))
        let previous = keyValue(key, at: write.revision)
        let keyValue = KeyValue(
            key: key, createRevision: previous?.createRevision ?? revision.main, modRevision: revision.main,
            version: (previous?.version ?? 0) + 1, value: value, lease: lease)
        if index[key] == nil {
            sortedKeys.insert(key)
            index[key] = KeyIndex()
        }
        if previous == nil { liveKeyCount += 1 }
        index[key]!.put(revision)
        values[revision] = keyValue
        write.events.append(Event(kind: .put, keyValue: keyValue, previous: previous))
        return previous
    }

    /// Records deletes of every key live in `range` in `write`; returns the
    /// deleted versions (as this write saw them). The events carry the
    /// version before the write as `previous`, as etcd's watch reads it (at
    /// revision - 1); the two differ only for a key a nested txn put earlier
    /// in the same write.
    mutating func delete(_ range: KeyRange, in write: inout Write) -> [KeyValue] {
        var deleted: [KeyValue] = []
        scan(range, at: write.readRevision) { keyValue in
            deleted.append(keyValue)
            return true
        }
        for previous in deleted {
            let revision = Revision(main: write.revision, sub: Int64(write.events.count))
            index[previous.key]!.tombstone(revision)
            liveKeyCount -= 1
            let tombstone = KeyValue(
                key: previous.key, createRevision: 0, modRevision: revision.main, version: 0, value: [])
            let before =
                previous.modRevision == write.revision
                ? keyValue(previous.key, at: write.beginRevision) : previous
            write.events.append(Event(kind: .delete, keyValue: tombstone, previous: before))
        }
        return deleted
    }

    /// Ends `write`: if it changed anything, its revision becomes current and
    /// its events join the history.
    mutating func commit(_ write: Write) -> [Event] {
        precondition(write.beginRevision == currentRevision, "write began at \(write.beginRevision)")
        guard !write.events.isEmpty else { return [] }
        currentRevision += 1
        history.append(write.events)
        return write.events
    }

    func beginWrite() -> Write { Write(beginRevision: currentRevision) }
}
