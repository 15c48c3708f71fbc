/// One version of one key, as etcd's `mvccpb.KeyValue` carries it.
///
/// Properties:
/// 1. `createRevision` is the main revision of the put that created the
///    key's current generation; `modRevision` the main revision of this
///    version; `version` counts puts since creation, starting at 1.
/// 2. A deleted key has no KeyValue in ranges; in a delete event the KeyValue
///    carries only the key and `modRevision` (the deleting revision), other
///    fields zero, exactly as etcd sends it.
public struct KeyValue: Hashable, Sendable {
    public var key: Key
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64
    public var value: [UInt8]
    public var lease: LeaseID

    public init(
        key: Key, createRevision: Int64, modRevision: Int64, version: Int64, value: [UInt8],
        lease: LeaseID = .none
    ) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }
}

/// One change to the key space, as watchers receive it.
public struct Event: Hashable, Sendable {
    /// What the change did to its key.
    public enum Kind: Int, Hashable, Sendable {
        case put = 0
        case delete = 1
    }

    public var kind: Kind
    /// The new version (put) or the key and deleting revision (delete).
    public var keyValue: KeyValue
    /// The key's version just before this change, when it had one.
    public var previous: KeyValue?

    public init(kind: Kind, keyValue: KeyValue, previous: KeyValue? = nil) {
        self.kind = kind
        self.keyValue = keyValue
        self.previous = previous
    }

    /// The main revision the change was made at.
    public var revision: Int64 { keyValue.modRevision }
}
