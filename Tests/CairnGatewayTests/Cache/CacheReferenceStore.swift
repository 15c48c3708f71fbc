import CairnAPI
import Foundation

/// A deliberately naive model of an etcd store for the cache tests: a plain
/// dictionary of keys, etcd's revision rules for puts and deletes, and
/// etcd's Range semantics written out directly (scan everything, filter,
/// sort, truncate) with no shared code with the cache.
struct CacheReferenceStore {
    private(set) var keyValues: [[UInt8]: Mvccpb_KeyValue] = [:]
    private(set) var revision: Int64 = 1

    /// One write transaction: puts and deletes applied at one new revision.
    /// Returns the events (empty when nothing changed: etcd does not bump the
    /// revision for a delete that deletes nothing).
    mutating func transaction(puts: [([UInt8], [UInt8])], deletes: [[UInt8]]) -> [Mvccpb_Event] {
        let next = revision + 1
        var events: [Mvccpb_Event] = []
        for key in deletes where keyValues[key] != nil && !puts.contains(where: { $0.0 == key }) {
            keyValues[key] = nil
            var event = Mvccpb_Event()
            event.type = .delete
            event.kv.key = Data(key)
            event.kv.modRevision = next
            events.append(event)
        }
        for (key, value) in puts {
            var keyValue = Mvccpb_KeyValue()
            keyValue.key = Data(key)
            keyValue.value = Data(value)
            keyValue.modRevision = next
            if let previous = keyValues[key] {
                keyValue.createRevision = previous.createRevision
                keyValue.version = previous.version + 1
            } else {
                keyValue.createRevision = next
                keyValue.version = 1
            }
            keyValue.lease = Int64(value.count % 3)
            keyValues[key] = keyValue
            var event = Mvccpb_Event()
            event.type = .put
            event.kv = keyValue
            events.append(event)
        }
        if !events.isEmpty { revision = next }
        return events
    }

    /// A write outside any cached prefix: bumps the revision only.
    mutating func unrelatedWrite() -> Int64 {
        revision += 1
        return revision
    }

    /// etcd's answer to a Range restricted to keys passing `visible`, at
    /// header revision `headerRevision`.
    func range(
        _ request: Etcdserverpb_RangeRequest, headerRevision: Int64,
        visible: ([UInt8]) -> Bool = { _ in true }
    ) -> Etcdserverpb_RangeResponse {
        let key = [UInt8](request.key)
        let end = [UInt8](request.rangeEnd)
        let selected = keyValues.filter { entry in
            guard visible(entry.key) else { return false }
            if end.isEmpty { return entry.key == key }
            if end == [0] { return !entry.key.lexicographicallyPrecedes(key) }
            return !entry.key.lexicographicallyPrecedes(key) && entry.key.lexicographicallyPrecedes(end)
        }
        var response = Etcdserverpb_RangeResponse()
        response.header.revision = headerRevision
        response.count = Int64(selected.count)
        if request.countOnly { return response }
        var kvs = selected.values.filter { kv in
            (request.maxModRevision == 0 || kv.modRevision <= request.maxModRevision)
                && (request.minModRevision == 0 || kv.modRevision >= request.minModRevision)
                && (request.maxCreateRevision == 0 || kv.createRevision <= request.maxCreateRevision)
                && (request.minCreateRevision == 0 || kv.createRevision >= request.minCreateRevision)
        }
        kvs.sort { Self.precedes($0, $1, request) }
        if request.limit > 0 && kvs.count > Int(request.limit) {
            kvs = Array(kvs.prefix(Int(request.limit)))
            response.more = true
        }
        if request.keysOnly {
            kvs = kvs.map {
                var kv = $0
                kv.value = Data()
                return kv
            }
        }
        response.kvs = kvs
        return response
    }

    /// Total order of the sorted answer: the target field in the requested
    /// direction, ties by ascending key.
    private static func precedes(
        _ lhs: Mvccpb_KeyValue, _ rhs: Mvccpb_KeyValue, _ request: Etcdserverpb_RangeRequest
    )
        -> Bool
    {
        let lhsKey = [UInt8](lhs.key)
        let rhsKey = [UInt8](rhs.key)
        var order = request.sortOrder
        if request.sortTarget != .key && order == .none { order = .ascend }
        let fieldOrder: Int
        switch request.sortTarget {
        case .key: fieldOrder = lhsKey == rhsKey ? 0 : (lhsKey.lexicographicallyPrecedes(rhsKey) ? -1 : 1)
        case .version: fieldOrder = lhs.version == rhs.version ? 0 : (lhs.version < rhs.version ? -1 : 1)
        case .create:
            fieldOrder =
                lhs.createRevision == rhs.createRevision
                ? 0 : (lhs.createRevision < rhs.createRevision ? -1 : 1)
        case .mod:
            fieldOrder = lhs.modRevision == rhs.modRevision ? 0 : (lhs.modRevision < rhs.modRevision ? -1 : 1)
        case .value:
            let lhsValue = [UInt8](lhs.value)
            let rhsValue = [UInt8](rhs.value)
            fieldOrder = lhsValue == rhsValue ? 0 : (lhsValue.lexicographicallyPrecedes(rhsValue) ? -1 : 1)
        case .UNRECOGNIZED: fieldOrder = 0
        }
        if fieldOrder != 0 { return order == .descend ? fieldOrder > 0 : fieldOrder < 0 }
        return lhsKey.lexicographicallyPrecedes(rhsKey)
    }
}

/// A small seeded generator (SplitMix64) so that every failure replays.
struct CacheTestRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// Builders shared by the cache tests.
enum CacheFixture {
    static func watchResponse(events: [Mvccpb_Event], headerRevision: Int64, fragment: Bool = false)
        -> Etcdserverpb_WatchResponse
    {
        var response = Etcdserverpb_WatchResponse()
        response.header.revision = headerRevision
        response.events = events
        response.fragment = fragment
        return response
    }

    /// A progress notification: no events, not created, not canceled.
    static func progress(_ revision: Int64) -> Etcdserverpb_WatchResponse {
        watchResponse(events: [], headerRevision: revision)
    }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
}
