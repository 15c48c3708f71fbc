import CairnCore
import DequeModule

/// Why this file exists: a replicated state machine must snapshot the whole
/// key space (history since the compact revision included) and rebuild it on
/// another member, so the store's internal state can be exported as plain
/// values and imported back, with its invariants checked on the way in.
extension MVCCStore {
    /// One retained revision of one key: a put with its version, or the
    /// tombstone that ends a generation (`keyValue` nil).
    public struct ExportedRevision: Hashable, Sendable {
        public var revision: Revision
        public var keyValue: KeyValue?

        public init(revision: Revision, keyValue: KeyValue?) {
            self.revision = revision
            self.keyValue = keyValue
        }
    }

    /// One generation of a key (see `KeyIndex`): its creating revision, its
    /// version count (compacted puts included) and its retained revisions.
    public struct ExportedGeneration: Hashable, Sendable {
        public var created: Revision
        public var version: Int64
        public var revisions: [ExportedRevision]

        public init(created: Revision, version: Int64, revisions: [ExportedRevision]) {
            self.created = created
            self.version = version
            self.revisions = revisions
        }
    }

    /// One key's whole retained history.
    public struct ExportedKey: Hashable, Sendable {
        public var key: Key
        public var generations: [ExportedGeneration]

        public init(key: Key, generations: [ExportedGeneration]) {
            self.key = key
            self.generations = generations
        }
    }

    /// The store's state as plain values.
    ///
    /// Properties (checked by `init(importing:)`):
    /// 1. `keys` are in strictly increasing key order, none empty.
    /// 2. In each key, revisions strictly increase across generations; every
    ///    generation but the last ends with a tombstone and holds no other;
    ///    no put revision belongs to two keys.
    /// 3. `history` holds one entry per main revision from
    ///    `historyFirstRevision` through `currentRevision`.
    public struct ExportedState: Hashable, Sendable {
        public var currentRevision: Int64
        public var compactedRevision: Int64
        public var historyFirstRevision: Int64
        public var keys: [ExportedKey]
        public var history: [[Event]]

        public init(
            currentRevision: Int64, compactedRevision: Int64, historyFirstRevision: Int64,
            keys: [ExportedKey], history: [[Event]]
        ) {
            self.currentRevision = currentRevision
            self.compactedRevision = compactedRevision
            self.historyFirstRevision = historyFirstRevision
            self.keys = keys
            self.history = history
        }
    }

    /// Why an import was refused: which property of `ExportedState` failed.
    public struct ImportError: Error, Hashable, Sendable {
        public var reason: String

        public init(reason: String) { self.reason = reason }
    }

    /// The whole state, keys in key order.
    public func exportState() -> ExportedState {
        let keys = sortedKeys.all.map { key in
            let generations = index[key]!.generations.enumerated().map { position, generation in
                let closed = position < index[key]!.generations.count - 1
                let revisions = generation.revisions.enumerated().map { offset, revision in
                    let isTombstone = closed && offset == generation.revisions.count - 1
                    return ExportedRevision(
                        revision: revision, keyValue: isTombstone ? nil : values[revision])
                }
                return ExportedGeneration(
                    created: generation.created, version: generation.version, revisions: revisions)
            }
            return ExportedKey(key: key, generations: generations)
        }
        return ExportedState(
            currentRevision: currentRevision, compactedRevision: compactedRevision,
            historyFirstRevision: historyFirstRevision, keys: keys, history: historyEvents())
    }

    /// Rebuilds a store from `exportState()`'s output, refusing state that
    /// breaks the properties of `ExportedState`.
    public init(importing state: ExportedState, limits: Limits = Limits()) throws(ImportError) {
        self.init(limits: limits)
        let historyCount = state.currentRevision - state.historyFirstRevision + 1
        guard state.currentRevision >= 1, state.compactedRevision <= state.currentRevision,
            historyCount >= 0, Int64(state.history.count) == historyCount
        else { throw ImportError(reason: "revisions and history disagree") }
        var previousKey: Key?
        for exported in state.keys {
            if exported.key.isEmpty || (previousKey.map { !($0 < exported.key) } ?? false) {
                throw ImportError(reason: "keys out of order")
            }
            previousKey = exported.key
            try importKey(exported, currentRevision: state.currentRevision)
        }
        currentRevision = state.currentRevision
        compactedRevision = state.compactedRevision
        history = EventHistory(firstRevision: state.historyFirstRevision)
        for (offset, events) in state.history.enumerated() {
            let main = state.historyFirstRevision + Int64(offset)
            history.append(events.compactMap { historyRecord($0, at: main) })
        }
    }

    /// The history record of an imported event: a put names its version by
    /// sub revision, found in the key's index. A put whose version is not
    /// there (compaction at its revision removed it) is dropped, as `events`
    /// would skip it.
    private func historyRecord(_ event: Event, at main: Int64) -> EventHistory.Record? {
        let key = event.keyValue.key
        guard event.kind == .put else { return EventHistory.Record(key: key, sub: 0, isDelete: true) }
        guard
            let stored = index[key]?.allRevisions.first(where: { $0.main == main && values[$0] != nil }),
            let sub = Int32(exactly: stored.sub)
        else { return nil }
        return EventHistory.Record(key: key, sub: sub, isDelete: false)
    }

    private mutating func importKey(_ exported: ExportedKey, currentRevision: Int64) throws(ImportError) {
        var generations: [KeyIndex.Generation] = []
        var last: Revision?
        for (position, generation) in exported.generations.enumerated() {
            let closed = position < exported.generations.count - 1
            for (offset, stored) in generation.revisions.enumerated() {
                let isTombstone = closed && offset == generation.revisions.count - 1
                if let last, !(last < stored.revision) { throw ImportError(reason: "revisions out of order") }
                if stored.revision.main > currentRevision {
                    throw ImportError(reason: "revision after current")
                }
                last = stored.revision
                if isTombstone != (stored.keyValue == nil) {
                    throw ImportError(reason: "misplaced tombstone")
                }
                if let keyValue = stored.keyValue {
                    if values[stored.revision] != nil { throw ImportError(reason: "revision used twice") }
                    if keyValue.key != exported.key { throw ImportError(reason: "value under another key") }
                    values[stored.revision] = keyValue
                }
            }
            if closed && generation.revisions.isEmpty { throw ImportError(reason: "empty closed generation") }
            generations.append(
                KeyIndex.Generation(
                    created: generation.created, version: generation.version,
                    revisions: generation.revisions.map(\.revision)))
        }
        let keyIndex = KeyIndex(generations: generations)
        if keyIndex.isEmpty { throw ImportError(reason: "key without revisions") }
        index[exported.key] = keyIndex
        sortedKeys.insert(exported.key)
        if keyIndex.isLive { liveKeyCount += 1 }
    }
}
