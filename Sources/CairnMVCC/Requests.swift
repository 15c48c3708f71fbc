import CairnCore

/// The order of a Range's results (etcd's `RangeRequest.SortOrder`).
public enum SortOrder: Int, Hashable, Sendable {
    case none = 0
    case ascend = 1
    case descend = 2
}

/// The field a Range's results are sorted by (etcd's `RangeRequest.SortTarget`).
public enum SortTarget: Int, Hashable, Sendable {
    case key = 0
    case version = 1
    case create = 2
    case mod = 3
    case value = 4
}

/// A read of a key range, with etcd's `RangeRequest` fields.
public struct RangeRequest: Hashable, Sendable {
    public var key: Key
    /// etcd's range_end: empty = `key` only, "\0" = from `key` on.
    public var rangeEnd: Key
    /// At most this many keys; 0 or negative = no limit.
    public var limit: Int64
    /// Read at this main revision; 0 or negative = the current revision.
    public var revision: Int64
    public var sortOrder: SortOrder
    public var sortTarget: SortTarget
    public var keysOnly: Bool
    public var countOnly: Bool
    /// Drop keys whose mod revision is below this (0 = no bound).
    public var minModRevision: Int64
    /// Drop keys whose mod revision is above this (0 = no bound).
    public var maxModRevision: Int64
    /// Drop keys whose create revision is below this (0 = no bound).
    public var minCreateRevision: Int64
    /// Drop keys whose create revision is above this (0 = no bound).
    public var maxCreateRevision: Int64

    public init(
        key: Key, rangeEnd: Key = Key([]), limit: Int64 = 0, revision: Int64 = 0,
        sortOrder: SortOrder = .none, sortTarget: SortTarget = .key, keysOnly: Bool = false,
        countOnly: Bool = false, minModRevision: Int64 = 0, maxModRevision: Int64 = 0,
        minCreateRevision: Int64 = 0, maxCreateRevision: Int64 = 0
    ) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.limit = limit
        self.revision = revision
        self.sortOrder = sortOrder
        self.sortTarget = sortTarget
        self.keysOnly = keysOnly
        self.countOnly = countOnly
        self.minModRevision = minModRevision
        self.maxModRevision = maxModRevision
        self.minCreateRevision = minCreateRevision
        self.maxCreateRevision = maxCreateRevision
    }

    /// The keys addressed.
    public var range: KeyRange { KeyRange(key: key, rangeEnd: rangeEnd) }

    /// etcd's request check (v3rpc `checkRangeRequest`).
    public func validate() throws(CairnError) {
        if key.isEmpty { throw .emptyKey }
    }
}

/// The answer to a Range.
public struct RangeResponse: Hashable, Sendable {
    /// The store's revision when the read was served (the response header's).
    public var revision: Int64
    public var keyValues: [KeyValue]
    /// Whether keys beyond `limit` matched.
    public var more: Bool
    /// How many keys the range held at the read revision, before the
    /// revision filters and the limit (etcd's `count`).
    public var count: Int64

    public init(revision: Int64, keyValues: [KeyValue], more: Bool, count: Int64) {
        self.revision = revision
        self.keyValues = keyValues
        self.more = more
        self.count = count
    }
}

/// A write of one key, with etcd's `PutRequest` fields.
public struct PutRequest: Hashable, Sendable {
    public var key: Key
    public var value: [UInt8]
    public var lease: LeaseID
    public var previousKeyValue: Bool
    /// Keep the key's current value (the key must exist).
    public var ignoreValue: Bool
    /// Keep the key's current lease (the key must exist).
    public var ignoreLease: Bool

    public init(
        key: Key, value: [UInt8], lease: LeaseID = .none, previousKeyValue: Bool = false,
        ignoreValue: Bool = false, ignoreLease: Bool = false
    ) {
        self.key = key
        self.value = value
        self.lease = lease
        self.previousKeyValue = previousKeyValue
        self.ignoreValue = ignoreValue
        self.ignoreLease = ignoreLease
    }

    /// etcd's request check (v3rpc `checkPutRequest`).
    public func validate() throws(CairnError) {
        if key.isEmpty { throw .emptyKey }
        if ignoreValue && !value.isEmpty { throw .valueProvided }
        if ignoreLease && lease != .none { throw .leaseProvided }
    }
}

/// The answer to a Put.
public struct PutResponse: Hashable, Sendable {
    public var revision: Int64
    /// The key's version before the put, when asked for and it existed.
    public var previous: KeyValue?

    public init(revision: Int64, previous: KeyValue? = nil) {
        self.revision = revision
        self.previous = previous
    }
}

/// A delete of a key range, with etcd's `DeleteRangeRequest` fields.
public struct DeleteRangeRequest: Hashable, Sendable {
    public var key: Key
    public var rangeEnd: Key
    public var previousKeyValues: Bool

    public init(key: Key, rangeEnd: Key = Key([]), previousKeyValues: Bool = false) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.previousKeyValues = previousKeyValues
    }

    public var range: KeyRange { KeyRange(key: key, rangeEnd: rangeEnd) }

    /// etcd's request check (v3rpc `checkDeleteRequest`).
    public func validate() throws(CairnError) {
        if key.isEmpty { throw .emptyKey }
    }
}

/// The answer to a DeleteRange.
public struct DeleteRangeResponse: Hashable, Sendable {
    public var revision: Int64
    public var deleted: Int64
    /// The deleted keys' last versions, when asked for.
    public var previous: [KeyValue]

    public init(revision: Int64, deleted: Int64, previous: [KeyValue] = []) {
        self.revision = revision
        self.deleted = deleted
        self.previous = previous
    }
}

/// A write's answer together with the events it produced, for the watch hub
/// and the lessor (events always carry the previous version; the hub strips
/// it for watchers that did not ask).
public struct WriteOutcome<Response: Sendable>: Sendable {
    public var response: Response
    public var events: [Event]

    public init(response: Response, events: [Event]) {
        self.response = response
        self.events = events
    }
}

extension WriteOutcome: Equatable where Response: Equatable {}
extension WriteOutcome: Hashable where Response: Hashable {}
