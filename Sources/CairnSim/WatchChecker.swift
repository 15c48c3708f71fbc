/// One key-space change as a watcher receives it, or as the final history holds it.
public struct WatchedEvent: Hashable, Sendable, CustomStringConvertible {
    /// What happened to the key.
    public enum Kind: Hashable, Sendable {
        case put
        case delete
    }

    /// The main revision of the change (several events share one in a txn).
    public var revision: Int64
    public var key: [UInt8]
    public var kind: Kind
    /// The value put (empty for a delete).
    public var value: [UInt8]

    public init(revision: Int64, key: [UInt8], kind: Kind, value: [UInt8] = []) {
        self.revision = revision
        self.key = key
        self.kind = kind
        self.value = value
    }

    public var description: String {
        "\(kind) \(String(decoding: key, as: UTF8.self))@\(revision)"
    }
}

/// Checks one watcher's events against the final history of the key space: etcd's watch
/// guarantees, as a pure function for history tests.
///
/// Given the watch (key range from a start revision) and the final history (every event, in
/// revision order, as the members applied them), the watcher's events must be:
/// 1. ordered: revisions never go back, and events of one revision come in history order;
/// 2. unique: no event twice;
/// 3. true: each one is in the history, with the same key, kind and value;
/// 4. gap-free and atomic: they are exactly the history's events of the range from the start
///    revision through the last revision the watcher has seen complete (its last event's
///    revision, or a later progress notification's).
public enum WatchChecker {
    /// The watched range: etcd's key and range_end (empty: the key alone; `[0]`: every key
    /// from `key` on).
    public struct Watch: Hashable, Sendable {
        public var key: [UInt8]
        public var rangeEnd: [UInt8]
        public var startRevision: Int64

        public init(key: [UInt8], rangeEnd: [UInt8] = [], startRevision: Int64) {
            self.key = key
            self.rangeEnd = rangeEnd
            self.startRevision = startRevision
        }

        func contains(_ key: [UInt8]) -> Bool {
            if rangeEnd.isEmpty { return key == self.key }
            if key.lexicographicallyPrecedes(self.key) { return false }
            return rangeEnd == [0] || key.lexicographicallyPrecedes(rangeEnd)
        }
    }

    /// The first violation, or nil. `progressRevision` is the highest revision a progress
    /// notification (synced with the stream) reported after the last event, if any.
    public static func check(
        watch: Watch, received: [WatchedEvent], progressRevision: Int64? = nil, history: [WatchedEvent]
    ) -> String? {
        for (previous, next) in zip(received, received.dropFirst()) where next.revision < previous.revision {
            return "events out of order: \(next) after \(previous)"
        }
        var seen: Set<WatchedEvent> = []
        for event in received where !seen.insert(event).inserted {
            return "event received twice: \(event)"
        }
        let complete = max(received.last?.revision ?? 0, progressRevision ?? 0)
        let expected = history.filter {
            $0.revision >= watch.startRevision && $0.revision <= complete && watch.contains($0.key)
        }
        for (position, event) in received.enumerated() {
            guard position < expected.count else { return "event not in the history: \(event)" }
            if expected[position] != event {
                let missing = expected[position]
                if history.contains(event) { return "gap: \(missing) missing before \(event)" }
                return "event not in the history: \(event) (expected \(missing))"
            }
        }
        if expected.count > received.count {
            return
                "gap: \(expected[received.count]) missing though revision \(complete) was reported complete"
        }
        return nil
    }
}
