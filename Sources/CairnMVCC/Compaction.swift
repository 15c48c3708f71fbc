import CairnCore

/// The answer to HashKV: a digest of every retained version up to a
/// revision, so members can compare their key spaces.
public struct KeySpaceHash: Hashable, Sendable {
    public var hash: UInt32
    public var compactRevision: Int64
    /// The revision the hash covers.
    public var revision: Int64
}

extension MVCCStore {
    /// etcd's Compact: forgets every version that no read at or after
    /// `revision` can see, keeping each key's newest version at or below it
    /// (unless that is a delete), and the history before `revision`.
    public mutating func compact(_ revision: Int64) throws(CairnError) {
        if revision <= compactedRevision { throw .compacted }
        if revision > currentRevision { throw .futureRevision }
        compactedRevision = revision
        var emptied = false
        for key in sortedKeys.all {
            let dropped = index[key]!.compact(at: revision)
            for old in dropped { values.removeValue(forKey: old) }
            if index[key]!.isEmpty {
                index.removeValue(forKey: key)
                emptied = true
            }
        }
        if emptied { sortedKeys.removeAll { index[$0] == nil } }
        compactHistory(revision)
    }

    private mutating func compactHistory(_ revision: Int64) {
        while history.firstRevision < revision, history.revisionCount > 0 {
            history.removeFirstRevision()
        }
        if history.firstRevision == revision { history.removeDeletesOfFirstRevision() }
    }

    /// The events of main revisions `from` through `through` on keys in
    /// `range`, never splitting a revision: at most `eventsMax` events (more only
    /// when the first revision with events alone holds more) and at most
    /// `revisionsMax` revisions scanned. Returns the events and the next
    /// revision to read. `from` must not be below the compacted revision.
    public func events(
        in range: KeyRange, from: Int64, through: Int64, eventsMax: Int, revisionsMax: Int = .max
    ) -> (events: [Event], next: Int64) {
        precondition(from >= compactedRevision, "history read from \(from) below \(compactedRevision)")
        var events: [Event] = []
        var revision = max(from, historyFirstRevision)
        var scanned = 0
        while revision <= min(through, currentRevision) && scanned < revisionsMax {
            var batch: [Event] = []
            for record in history.records(of: revision) where range.contains(record.key) {
                if let event = event(record, at: revision) { batch.append(event) }
            }
            if !events.isEmpty && events.count + batch.count > eventsMax { break }
            events += batch
            revision += 1
            scanned += 1
            if events.count >= eventsMax { break }
        }
        return (events, revision)
    }

    /// The event a history record stands for, rebuilt from the versions:
    /// the previous version is the one live at `revision - 1`, unless
    /// compaction removed it (etcd reads it there too). Nil for a put whose
    /// version compaction removed (a later delete in the same revision
    /// tombstoned it at the compact revision), which etcd no longer has either.
    func event(_ record: EventHistory.Record, at revision: Int64) -> Event? {
        let previous = revision - 1 < compactedRevision ? nil : keyValue(record.key, at: revision - 1)
        if record.isDelete {
            let tombstone = KeyValue(
                key: record.key, createRevision: 0, modRevision: revision, version: 0, value: [])
            return Event(kind: .delete, keyValue: tombstone, previous: previous)
        }
        guard let version = values[Revision(main: revision, sub: Int64(record.sub))] else { return nil }
        return Event(kind: .put, keyValue: version, previous: previous)
    }

    /// The events of every held revision, oldest first (for export).
    func historyEvents() -> [[Event]] {
        (0..<history.revisionCount).map { offset in
            let revision = history.firstRevision + Int64(offset)
            return history.records(of: revision).compactMap { event($0, at: revision) }
        }
    }

    /// A CRC-32C digest of every retained version at or below `revision`
    /// (0 = current), in key then revision order; etcd's HashKV checks apply.
    public func hashKeySpace(revision: Int64 = 0) throws(CairnError) -> KeySpaceHash {
        if revision > currentRevision { throw .futureRevision }
        let upTo = revision <= 0 ? currentRevision : revision
        if upTo < compactedRevision { throw .compacted }
        var crc = KeySpaceDigest()
        for key in sortedKeys.all {
            for stored in index[key]!.allRevisions where stored.main <= upTo {
                crc.update(integer: stored.main)
                crc.update(integer: stored.sub)
                crc.update(bytes: key.bytes)
                if let keyValue = values[stored] {
                    crc.update(integer: keyValue.createRevision)
                    crc.update(integer: keyValue.version)
                    crc.update(integer: keyValue.lease.rawValue)
                    crc.update(bytes: keyValue.value)
                } else {
                    crc.update(integer: -1)  // a tombstone
                }
            }
        }
        return KeySpaceHash(hash: crc.value, compactRevision: compactedRevision, revision: upTo)
    }
}

/// HashKV's digest of versions: CRC-32C (the checksum etcd uses for HashKV)
/// over integers as eight little-endian bytes and byte strings prefixed
/// with their length.
struct KeySpaceDigest {
    private var state = CRC32C.initial

    var value: UInt32 { CRC32C.finalize(state) }

    mutating func update(bytes: [UInt8]) {
        update(integer: Int64(bytes.count))
        state = CRC32C.update(state, bytes)
    }

    mutating func update(integer: Int64) { state = CRC32C.update(state, integer: integer) }
}
