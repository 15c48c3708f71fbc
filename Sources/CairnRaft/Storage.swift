/// Why storage could not answer.
public enum StorageError: Error, Sendable, Hashable {
    /// The requested index is older than the first retained entry (compacted into a snapshot).
    case compacted
    /// The requested index is past the last entry.
    case unavailable
    /// A snapshot is being produced; ask again later.
    case snapshotTemporarilyUnavailable
}

/// A read-only view of the *persisted* log, hard state and latest snapshot.
///
/// `RaftNode` only reads through this; the application writes (it persists each `Ready`
/// and then calls `RaftNode.advance`). It is a class-bound protocol because the writer and
/// the reader share one instance, so a write-ahead log can sit behind it.
///
/// Index rules: entries `firstIndex()...lastIndex()` are retrievable; `term(at:)` also answers
/// for `firstIndex() - 1` (the index of the latest snapshot, or 0).
public protocol RaftStorage: AnyObject {
    /// The persisted hard state and membership, read once when a node starts.
    func initialState() -> (HardState, ConfState)
    /// Index of the first retained entry (snapshot index + 1).
    func firstIndex() -> UInt64
    /// Index of the last persisted entry (or the snapshot index when there is none).
    func lastIndex() -> UInt64
    /// Term of the entry at `index`, valid for `firstIndex() - 1 ... lastIndex()`.
    func term(at index: UInt64) throws(StorageError) -> UInt64
    /// Entries `[low, high)`, at least one if any exist, then stopping before `bytesMax`.
    func entries(from low: UInt64, to high: UInt64, bytesMax: Int) throws(StorageError) -> [Entry]
    /// The most recent snapshot, to send to a follower that is too far behind.
    func snapshot() throws(StorageError) -> Snapshot
}

/// An in-memory `RaftStorage`, used by tests and the simulator, where it plays the role of
/// the disk: it holds exactly what the application has "persisted".
///
/// Invariants:
/// 1. `entries[0]` is a sentinel carrying the snapshot's index and term.
/// 2. `entries[i].index == entries[0].index + i`.
public final class MemoryStorage: RaftStorage {
    public private(set) var hardState = HardState()
    public private(set) var latestSnapshot = Snapshot()
    private var entriesWithSentinel: [Entry] = [Entry(term: 0, index: 0)]

    public init() {}

    /// Starts with a membership, as a freshly bootstrapped cluster does.
    public convenience init(voters: Set<NodeID>, learners: Set<NodeID> = []) {
        self.init()
        latestSnapshot.confState = ConfState(voters: voters, learners: learners)
    }

    public func initialState() -> (HardState, ConfState) { (hardState, latestSnapshot.confState) }

    public func firstIndex() -> UInt64 { entriesWithSentinel[0].index + 1 }

    public func lastIndex() -> UInt64 { entriesWithSentinel[0].index + UInt64(entriesWithSentinel.count) - 1 }

    public func term(at index: UInt64) throws(StorageError) -> UInt64 {
        let offset = entriesWithSentinel[0].index
        if index < offset { throw .compacted }
        if index > lastIndex() { throw .unavailable }
        return entriesWithSentinel[Int(index - offset)].term
    }

    public func entries(from low: UInt64, to high: UInt64, bytesMax: Int) throws(StorageError) -> [Entry] {
        let offset = entriesWithSentinel[0].index
        if low <= offset { throw .compacted }
        if high > lastIndex() + 1 || low > high { throw .unavailable }
        var result: [Entry] = []
        var bytes = 0
        var index = low
        while index < high {
            let entry = entriesWithSentinel[Int(index - offset)]
            bytes += entry.sizeBytes
            if !result.isEmpty && bytes > bytesMax { break }
            result.append(entry)
            index += 1
        }
        return result
    }

    public func snapshot() throws(StorageError) -> Snapshot { latestSnapshot }

    /// Persists the hard state of a `Ready`.
    public func setHardState(_ state: HardState) { hardState = state }

    /// Persists entries of a `Ready`, replacing any conflicting suffix. Entries already
    /// covered by the snapshot are ignored.
    public func append(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        let offset = entriesWithSentinel[0].index
        let last = first.index + UInt64(entries.count) - 1
        if last <= offset { return }
        let skip = first.index <= offset ? Int(offset + 1 - first.index) : 0
        let start = first.index + UInt64(skip)
        precondition(start <= lastIndex() + 1, "append would leave a gap: \(start) after \(lastIndex())")
        entriesWithSentinel.removeSubrange(Int(start - offset)...)
        entriesWithSentinel.append(contentsOf: entries[skip...])
    }

    /// Persists a snapshot received from the leader, discarding the log it covers.
    public func applySnapshot(_ snapshot: Snapshot) {
        latestSnapshot = snapshot
        entriesWithSentinel = [Entry(term: snapshot.term, index: snapshot.index)]
    }

    /// Records a snapshot the application made of its own applied state at `index` (which
    /// must be retained in the log). Does not compact; call `compact(upTo:)` for that.
    public func createSnapshot(index: UInt64, confState: ConfState, data: [UInt8]) throws(StorageError) {
        if index <= latestSnapshot.index { throw .compacted }
        let term = try term(at: index)
        latestSnapshot = Snapshot(index: index, term: term, confState: confState, data: data)
    }

    /// Drops entries up to and including `index` (at most the latest snapshot's index), so
    /// the log stays bounded. Followers that need them get the snapshot instead.
    public func compact(upTo index: UInt64) throws(StorageError) {
        let offset = entriesWithSentinel[0].index
        if index <= offset { throw .compacted }
        if index > lastIndex() { throw .unavailable }
        let sentinel = Entry(term: entriesWithSentinel[Int(index - offset)].term, index: index)
        entriesWithSentinel.removeSubrange(0...Int(index - offset))
        entriesWithSentinel.insert(sentinel, at: 0)
    }
}
