import CairnCore
import DequeModule

/// The store's event history in compact form: per event only its key, its
/// position in its revision and whether it deleted the key. The versions
/// themselves are in the store's `values` and key index, from which
/// `MVCCStore.events(in:from:through:eventsMax:revisionsMax:)` rebuilds each
/// event, as etcd's watch reads its events back from the backend. Keeping
/// whole events (the version, and the previous one) cost about 170 bytes per
/// revision on top of the versions they repeat; a record costs 16, plus 8
/// per revision.
///
/// Properties:
/// 1. `starts` has one entry per revision from `firstRevision` on, contiguous;
///    `starts[i]` is the position of that revision's first record, counted
///    from the first record ever appended (`dropped` records are gone), and
///    positions never decrease.
/// 2. The records of a revision are in the order of its events.
struct EventHistory: Sendable {
    /// One event, without the versions it carries.
    struct Record: Sendable {
        var key: Key
        /// The event's sub revision (its position in its write).
        var sub: Int32
        var isDelete: Bool
    }

    private(set) var firstRevision: Int64
    private var records: Deque<Record> = []
    private var starts: Deque<Int> = []
    private var dropped = 0

    init(firstRevision: Int64 = 2) { self.firstRevision = firstRevision }

    /// Revisions held, from `firstRevision` on.
    var revisionCount: Int { starts.count }

    /// Appends the events of one write (each at its position as sub
    /// revision) as revision `firstRevision + revisionCount`.
    mutating func append(_ events: [Event]) {
        append(
            events.enumerated().map { position, event in
                Record(key: event.keyValue.key, sub: Int32(position), isDelete: event.kind == .delete)
            })
    }

    /// Appends the records of revision `firstRevision + revisionCount`.
    mutating func append(_ revisionRecords: [Record]) {
        starts.append(dropped + records.count)
        records.append(contentsOf: revisionRecords)
    }

    /// The records of `revision`, which must be held.
    func records(of revision: Int64) -> Deque<Record>.SubSequence {
        let offset = Int(revision - firstRevision)
        let start = starts[offset] - dropped
        let end = offset + 1 < starts.count ? starts[offset + 1] - dropped : records.count
        return records[start..<end]
    }

    /// Forgets the oldest revision.
    mutating func removeFirstRevision() {
        guard !starts.isEmpty else { return }
        let end = starts.count > 1 ? starts[1] - dropped : records.count
        records.removeFirst(end)
        dropped += end
        starts.removeFirst()
        firstRevision += 1
    }

    /// Forgets the deletes of the oldest revision (compaction at it drops
    /// them, as etcd's drops tombstones at the compact revision).
    mutating func removeDeletesOfFirstRevision() {
        guard !starts.isEmpty else { return }
        let count = starts.count > 1 ? starts[1] - dropped : records.count
        let kept = records.prefix(count).filter { !$0.isDelete }
        records.removeFirst(count)
        records.insert(contentsOf: kept, at: 0)
        dropped += count - kept.count
        starts[0] = dropped
    }
}
