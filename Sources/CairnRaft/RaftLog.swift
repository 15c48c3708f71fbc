/// The log as one node sees it: the persisted part (read through `RaftStorage`) followed by
/// an unstable tail (entries, or a snapshot, not yet acknowledged as persisted).
///
/// Invariants:
/// 1. `applied <= committed <= lastIndex`.
/// 2. Unstable entries start at `unstableOffset`; if an unstable snapshot exists its index
///    is `unstableOffset - 1`.
/// 3. `handedOutIndex` (entries already given to a `Ready`) lies in
///    `unstableOffset - 1 ... lastIndex`.
struct RaftLog {
    let storage: any RaftStorage
    private(set) var unstableEntries: [Entry] = []
    private(set) var unstableOffset: UInt64
    private(set) var unstableSnapshot: Snapshot?
    /// Whether `unstableSnapshot` was already given to a `Ready`.
    private(set) var snapshotHandedOut = false
    private(set) var handedOutIndex: UInt64
    var committed: UInt64
    private(set) var applied: UInt64
    /// False only with `RaftConfig.unsafeTestingFaults` set (see `maybeAppend`).
    var trapsOnCommittedConflict = true
    /// Appends refused because they would have overwritten a committed entry.
    private(set) var committedConflicts = 0

    init(storage: any RaftStorage, committed: UInt64) {
        self.storage = storage
        let first = storage.firstIndex()
        let last = storage.lastIndex()
        unstableOffset = last + 1
        handedOutIndex = last
        self.committed = max(committed, first - 1)
        applied = first - 1
    }

    var firstIndex: UInt64 {
        if let snapshot = unstableSnapshot { return snapshot.index + 1 }
        return storage.firstIndex()
    }

    var lastIndex: UInt64 {
        if let last = unstableEntries.last { return last.index }
        if let snapshot = unstableSnapshot { return snapshot.index }
        return storage.lastIndex()
    }

    /// Last index known to be persisted (what a leader may count for itself).
    var stableIndex: UInt64 { unstableSnapshot == nil ? unstableOffset - 1 : 0 }

    var lastTerm: UInt64 { (try? term(at: lastIndex)) ?? 0 }

    func term(at index: UInt64) throws(StorageError) -> UInt64 {
        if index >= unstableOffset {
            let position = Int(index - unstableOffset)
            if position < unstableEntries.count { return unstableEntries[position].term }
            throw .unavailable
        }
        if let snapshot = unstableSnapshot {
            if index == snapshot.index { return snapshot.term }
            throw index < snapshot.index ? .compacted : .unavailable
        }
        return try storage.term(at: index)
    }

    /// Term at `index`, or 0 if it is not known (compacted or past the end).
    func termOrZero(_ index: UInt64) -> UInt64 { (try? term(at: index)) ?? 0 }

    func matchTerm(index: UInt64, term expected: UInt64) -> Bool {
        guard let actual = try? term(at: index) else { return false }
        return actual == expected
    }

    /// Raft paper, section 5.4.1: a log is more up-to-date if its last term is later, or
    /// equal with a longer log.
    func isUpToDate(lastIndex candidateIndex: UInt64, lastTerm candidateTerm: UInt64) -> Bool {
        let ourTerm = lastTerm
        return candidateTerm > ourTerm || (candidateTerm == ourTerm && candidateIndex >= lastIndex)
    }

    /// Entries `[low, high)` up to `bytesMax` (at least one).
    func slice(from low: UInt64, to high: UInt64, bytesMax: Int) throws(StorageError) -> [Entry] {
        if low >= high { return [] }
        if low < firstIndex { throw .compacted }
        if high > lastIndex + 1 { throw .unavailable }
        var result: [Entry] = []
        var bytes = 0
        if low < unstableOffset {
            let storedHigh = min(high, unstableOffset)
            result = try storage.entries(from: low, to: storedHigh, bytesMax: bytesMax)
            if UInt64(result.count) < storedHigh - low { return result }
            for entry in result { bytes += entry.sizeBytes }
        }
        var index = max(low, unstableOffset)
        while index < high {
            let entry = unstableEntries[Int(index - unstableOffset)]
            bytes += entry.sizeBytes
            if !result.isEmpty && bytes > bytesMax { break }
            result.append(entry)
            index += 1
        }
        return result
    }

    /// Largest index `<= index` whose term is `<= term` (used by both sides of fast
    /// backtracking to skip a whole term of conflicting entries per round trip).
    func findConflictByTerm(index: UInt64, term: UInt64) -> UInt64 {
        var candidate = min(index, lastIndex)
        while candidate > 0 {
            guard let found = try? self.term(at: candidate) else { return candidate }
            if found <= term { return candidate }
            candidate -= 1
        }
        return 0
    }

    /// Follower append (paper, AppendEntries receiver rules 2-5). Returns the new last
    /// index matched, or nil when the entry at `index` does not have `logTerm`.
    mutating func maybeAppend(index: UInt64, logTerm: UInt64, commit: UInt64, entries: [Entry]) -> UInt64? {
        guard matchTerm(index: index, term: logTerm) else { return nil }
        let lastNew = index + UInt64(entries.count)
        var firstNew = entries.count
        for (position, entry) in entries.enumerated() where !matchTerm(index: entry.index, term: entry.term) {
            firstNew = position
            break
        }
        if firstNew < entries.count {
            if entries[firstNew].index <= committed {
                // Impossible in a correct cluster (Leader Completeness). Trap, unless a test
                // fault made it possible on purpose: then refuse and count it for the checker.
                precondition(
                    !trapsOnCommittedConflict, "conflict with committed entry \(entries[firstNew].index)")
                committedConflicts += 1
                return nil
            }
            append(Array(entries[firstNew...]))
        }
        self.commit(to: min(commit, lastNew))
        return lastNew
    }

    /// Appends to the unstable tail, truncating any conflicting suffix.
    mutating func append(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        precondition(first.index > committed, "truncating committed index \(committed) at \(first.index)")
        if first.index == unstableOffset + UInt64(unstableEntries.count) {
            unstableEntries.append(contentsOf: entries)
        } else if first.index <= unstableOffset {
            // Replaces everything unstable (and shadows conflicting persisted entries).
            unstableOffset = first.index
            unstableEntries = entries
        } else {
            unstableEntries.removeSubrange(Int(first.index - unstableOffset)...)
            unstableEntries.append(contentsOf: entries)
        }
        handedOutIndex = min(handedOutIndex, first.index - 1)
    }

    mutating func commit(to index: UInt64) {
        if index > committed {
            precondition(index <= lastIndex, "commit \(index) beyond last index \(lastIndex)")
            committed = index
        }
    }

    mutating func restore(_ snapshot: Snapshot) {
        committed = snapshot.index
        unstableSnapshot = snapshot
        snapshotHandedOut = false
        unstableEntries = []
        unstableOffset = snapshot.index + 1
        handedOutIndex = snapshot.index
    }

    /// Unstable entries not yet handed to a `Ready`.
    var entriesToHandOut: ArraySlice<Entry> {
        let start = Int(max(handedOutIndex + 1, unstableOffset) - unstableOffset)
        return unstableEntries[min(start, unstableEntries.count)...]
    }

    mutating func markHandedOut(through index: UInt64, snapshot: Bool) {
        handedOutIndex = max(handedOutIndex, index)
        if snapshot { snapshotHandedOut = true }
    }

    /// The application persisted a snapshot: it is now in storage.
    mutating func snapshotPersisted(index: UInt64) {
        if let snapshot = unstableSnapshot, snapshot.index == index { unstableSnapshot = nil }
    }

    /// The application persisted entries up to `index` with term `term`; they leave the
    /// unstable tail unless they were replaced meanwhile.
    mutating func entriesPersisted(through index: UInt64, term: UInt64) {
        guard index >= unstableOffset, unstableSnapshot == nil else { return }
        let position = Int(index - unstableOffset)
        guard position < unstableEntries.count, unstableEntries[position].term == term else { return }
        unstableEntries.removeSubrange(0...position)
        unstableOffset = index + 1
    }

    /// Committed entries not yet handed out for applying, bounded by `bytesMax`.
    func nextCommittedEntries(bytesMax: Int) -> [Entry] {
        let low = max(applied + 1, firstIndex)
        let high = min(committed, handedOutIndex) + 1
        guard low < high else { return [] }
        return (try? slice(from: low, to: high, bytesMax: bytesMax)) ?? []
    }

    var hasNextCommittedEntries: Bool { max(applied + 1, firstIndex) <= min(committed, handedOutIndex) }

    mutating func applied(to index: UInt64) {
        precondition(index <= committed, "applied \(index) beyond committed \(committed)")
        applied = max(applied, index)
    }
}
