import CairnCore

/// One client watch stream (one gRPC Watch call); watch IDs are unique per
/// stream, as in etcd.
public struct WatchStreamID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (lhs: WatchStreamID, rhs: WatchStreamID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { String(rawValue) }
}

/// A request to create a watcher, with etcd's `WatchCreateRequest` fields.
public struct WatchCreateRequest: Hashable, Sendable {
    public var key: Key
    public var rangeEnd: Key
    /// The first revision to report; 0 = the revision after the current one.
    /// Negative values behave as in etcd (history from the start, or a
    /// compacted cancel).
    public var startRevision: Int64
    public var previousKeyValue: Bool
    /// Drop put events (etcd's NOPUT filter).
    public var noPut: Bool
    /// Drop delete events (etcd's NODELETE filter).
    public var noDelete: Bool
    public var progressNotify: Bool
    /// Split responses larger than the budget into fragments.
    public var fragment: Bool
    /// The ID the client chose; nil = assign the next free one (etcd's 0).
    public var watchID: WatchID?

    public init(
        key: Key, rangeEnd: Key = Key([]), startRevision: Int64 = 0, previousKeyValue: Bool = false,
        noPut: Bool = false, noDelete: Bool = false, progressNotify: Bool = false, fragment: Bool = false,
        watchID: WatchID? = nil
    ) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.startRevision = startRevision
        self.previousKeyValue = previousKeyValue
        self.noPut = noPut
        self.noDelete = noDelete
        self.progressNotify = progressNotify
        self.fragment = fragment
        self.watchID = watchID
    }

    /// The watched keys; an empty key means "\0", the smallest key, as etcd
    /// rewrites it.
    public var range: KeyRange {
        KeyRange(key: key.isEmpty ? Key([0]) : key, rangeEnd: rangeEnd)
    }
}

/// One message of a watch stream, with etcd's `WatchResponse` fields.
public struct WatchResponse: Hashable, Sendable {
    public var watchID: WatchID
    /// The header revision: the events' revision for live events, the store
    /// revision for history batches, creation and progress.
    public var revision: Int64
    public var created: Bool
    public var canceled: Bool
    /// Set with `canceled` when the start revision was compacted.
    public var compactRevision: Int64
    public var cancelReason: String
    /// More fragments of the same response follow.
    public var fragment: Bool
    public var events: [Event]

    public init(
        watchID: WatchID, revision: Int64, created: Bool = false, canceled: Bool = false,
        compactRevision: Int64 = 0, cancelReason: String = "", fragment: Bool = false, events: [Event] = []
    ) {
        self.watchID = watchID
        self.revision = revision
        self.created = created
        self.canceled = canceled
        self.compactRevision = compactRevision
        self.cancelReason = cancelReason
        self.fragment = fragment
        self.events = events
    }

    /// Whether this is a progress notification (no events, no state change).
    public var isProgress: Bool { events.isEmpty && !created && !canceled }

    /// Splits an event response whose estimated size exceeds `bytesMax` into
    /// fragments, each within the budget but holding at least one event;
    /// every fragment but the last is flagged `fragment` (etcd's
    /// `sendFragments`). Other responses come back whole.
    public func fragmented(bytesMax: Int) -> [WatchResponse] {
        guard events.count > 1, estimatedBytes > bytesMax else { return [self] }
        var fragments: [WatchResponse] = []
        var current = WatchResponse(watchID: watchID, revision: revision, fragment: true)
        var currentBytes = 0
        for event in events {
            let size = Self.estimatedBytes(of: event)
            if !current.events.isEmpty && currentBytes + size > bytesMax {
                fragments.append(current)
                current.events = []
                currentBytes = 0
            }
            current.events.append(event)
            currentBytes += size
        }
        current.fragment = false
        fragments.append(current)
        return fragments
    }

    /// An estimate of the encoded size: payload bytes plus a fixed overhead
    /// per key-value for revisions and framing.
    public var estimatedBytes: Int { events.reduce(0) { $0 + Self.estimatedBytes(of: $1) } }

    static func estimatedBytes(of event: Event) -> Int {
        let overhead = 48
        var bytes = overhead + event.keyValue.key.bytes.count + event.keyValue.value.count
        if let previous = event.previous {
            bytes += overhead + previous.key.bytes.count + previous.value.count
        }
        return bytes
    }
}

/// Why a watcher could not be created (etcd's mvcc watch errors, sent as the
/// cancel reason of a created-and-canceled response).
public enum WatchCreateError: Error, Hashable, Sendable {
    case emptyRange
    case duplicateID

    public var reason: String {
        switch self {
        case .emptyRange: "mvcc: watcher range is empty"
        case .duplicateID: "mvcc: duplicate watch ID provided on the WatchStream"
        }
    }
}
