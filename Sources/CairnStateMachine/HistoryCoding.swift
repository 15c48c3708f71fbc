import CairnCore
import CairnMVCC

/// The retained versions of a store, by revision, so a snapshot can write a
/// history event's versions as references instead of copies. Without this
/// every value would be written up to three times (the version, the event,
/// the next event's previous version).
struct HistoryVersions {
    /// The version at each retained put revision.
    var byRevision: [Revision: KeyValue] = [:]
    /// The revision of the last put of a key within one main revision.
    var byKeyAndMain: [KeyAndMain: Revision] = [:]

    struct KeyAndMain: Hashable {
        var key: Key
        var main: Int64
    }

    init(_ state: MVCCStore.ExportedState) {
        for exported in state.keys {
            for generation in exported.generations {
                for stored in generation.revisions {
                    guard let keyValue = stored.keyValue else { continue }
                    byRevision[stored.revision] = keyValue
                    byKeyAndMain[KeyAndMain(key: exported.key, main: stored.revision.main)] = stored.revision
                }
            }
        }
    }

    /// The retained revision holding exactly `keyValue`, if any.
    func revision(of keyValue: KeyValue) -> Revision? {
        guard let revision = byKeyAndMain[KeyAndMain(key: keyValue.key, main: keyValue.modRevision)],
            byRevision[revision] == keyValue
        else { return nil }
        return revision
    }
}

/// One history event's flags byte.
struct HistoryEventFlags: OptionSet {
    let rawValue: UInt8
    static let delete = HistoryEventFlags(rawValue: 1)
    /// The event's version is the retained put at (its revision, its position).
    static let versionByReference = HistoryEventFlags(rawValue: 2)
    static let hasPrevious = HistoryEventFlags(rawValue: 4)
    /// The previous version is a retained put, written as its revision.
    static let previousByReference = HistoryEventFlags(rawValue: 8)
    static let all: UInt8 = 15
}

extension ByteWriter {
    /// Writes an event of main revision `main` of the history; `position` is
    /// its place among that revision's events, which is the sub revision of
    /// a put's version.
    mutating func historyEvent(_ event: Event, main: Int64, position: Int, _ versions: HistoryVersions) {
        var flags: HistoryEventFlags = event.kind == .delete ? .delete : []
        let ownRevision = Revision(main: main, sub: Int64(position))
        let versionByReference = event.kind == .put && versions.byRevision[ownRevision] == event.keyValue
        if versionByReference { flags.insert(.versionByReference) }
        let previousRevision = event.previous.flatMap { versions.revision(of: $0) }
        if event.previous != nil { flags.insert(.hasPrevious) }
        if previousRevision != nil { flags.insert(.previousByReference) }
        byte(flags.rawValue)
        if !versionByReference { keyValue(event.keyValue) }
        if let previousRevision {
            revision(previousRevision)
        } else if let previous = event.previous {
            keyValue(previous)
        }
    }
}

extension ByteReader {
    mutating func historyEvent(
        main: Int64, position: Int, _ versions: HistoryVersions
    ) throws(DecodeError) -> Event {
        let rawFlags = try byte()
        guard rawFlags & ~HistoryEventFlags.all == 0 else { throw .malformed("history event flags") }
        let flags = HistoryEventFlags(rawValue: rawFlags)
        let keyValue: KeyValue
        if flags.contains(.versionByReference) {
            guard !flags.contains(.delete) else { throw .malformed("history delete by reference") }
            keyValue = try referenced(Revision(main: main, sub: Int64(position)), versions)
        } else {
            keyValue = try self.keyValue()
        }
        var previous: KeyValue?
        if flags.contains(.previousByReference) {
            guard flags.contains(.hasPrevious) else { throw .malformed("history previous flags") }
            previous = try referenced(try revision(), versions)
        } else if flags.contains(.hasPrevious) {
            previous = try self.keyValue()
        }
        return Event(kind: flags.contains(.delete) ? .delete : .put, keyValue: keyValue, previous: previous)
    }

    private func referenced(_ revision: Revision, _ versions: HistoryVersions) throws(DecodeError) -> KeyValue
    {
        guard let keyValue = versions.byRevision[revision] else {
            throw .malformed("history reference \(revision)")
        }
        return keyValue
    }
}
