/// The shape of the log that the WAL must know to validate appends: where
/// it ends, the newest snapshot marker and hard state. Replay and append use
/// the same rules, so what `append` accepts is exactly what replay rebuilds.
///
/// Invariants:
/// 1. `lastIndex`, when set, is above `snapshot?.index`.
/// 2. A non-empty log is contiguous: an entry may only land at an index in
///    `1...lastIndex + 1` above the snapshot (overwrite or extend).
struct LogState: Equatable {
    var hardState: HardState?
    var snapshot: SnapshotMarker?
    /// Index of the last entry, nil when the log holds no entry.
    var lastIndex: UInt64?

    /// Why `index` cannot be appended now, or nil when it can.
    /// `allowingGap` is for the first entry replayed after segments were
    /// released: it may start anywhere above the snapshot.
    func problem(appendingIndex index: UInt64, allowingGap: Bool = false) -> String? {
        if index == 0 { return "entry indexes start at 1" }
        if index == UInt64.max { return "entry index out of range" }
        if let snapshot, index <= snapshot.index {
            return "at or below the snapshot index \(snapshot.index)"
        }
        if let lastIndex {
            if index > lastIndex + 1 { return "leaves a gap after the last index \(lastIndex)" }
        } else if let snapshot, index != snapshot.index + 1, !allowingGap {
            return
                "the log is empty after snapshot \(snapshot.index): the next entry is \(snapshot.index + 1)"
        }
        return nil
    }

    /// The index the next new segment names as its first.
    var nextIndex: UInt64 {
        if let lastIndex { return lastIndex + 1 }
        return (snapshot?.index ?? 0) + 1
    }

    mutating func apply(_ record: WALRecord) {
        switch record {
        case .entry(let entry):
            lastIndex = entry.index
        case .hardState(let state):
            hardState = state
        case .snapshotMarker(let marker):
            snapshot = marker
            if let last = lastIndex, last <= marker.index { lastIndex = nil }
        }
    }
}

/// The log being rebuilt by replay: `LogState` plus the entries themselves.
///
/// Entries at or below a snapshot marker are kept while the log reaches the
/// marker, so a restart that must fall back to an older snapshot (the newest
/// one damaged) still finds the entries after it; `entries(after:)` cuts
/// them at the snapshot actually loaded. A marker beyond the last entry
/// replaces the whole log (the member installed a leader's snapshot).
struct ReplayedLog {
    private(set) var state = LogState()
    private var entries: [LogEntry] = []
    private var sawEntry = false

    /// Applies one replayed record, or returns why it is inconsistent with
    /// the log so far (which means the files are damaged).
    mutating func apply(_ record: WALRecord) -> String? {
        switch record {
        case .entry(let entry):
            if let problem = state.problem(appendingIndex: entry.index, allowingGap: !sawEntry) {
                return "entry \(entry.index) \(problem)"
            }
            if let first = entries.first, entry.index <= entries.last!.index {
                // Raft's conflict rule: the new entry supersedes the one at
                // its index and everything after it.
                let kept = entry.index > first.index ? Int(entry.index - first.index) : 0
                entries.removeLast(entries.count - kept)
            }
            entries.append(entry)
            sawEntry = true
        case .snapshotMarker(let marker):
            if let last = entries.last, marker.index > last.index {
                entries.removeAll()
            }
        case .hardState:
            break
        }
        state.apply(record)
        return nil
    }

    /// The entries above `floor` (default: the newest snapshot marker), or
    /// nil when they do not continue from `floor + 1` or, for a floor below
    /// the newest marker, do not reach that marker.
    func entries(after floor: UInt64?) -> [LogEntry]? {
        let marker = state.snapshot?.index ?? 0
        guard let floor = floor ?? state.snapshot?.index else { return entries }
        let kept = entries.drop { $0.index <= floor }
        if let first = kept.first, first.index != floor + 1 { return nil }
        if floor < marker, (kept.last?.index ?? 0) < marker { return nil }
        return Array(kept)
    }

    /// Index of the oldest entry replay holds, for error messages.
    var firstIndex: UInt64? { entries.first?.index }
}
