import CairnAPI
import CairnClient
import CairnRPC
import Foundation

/// A tenant's confinement: the one place that rewrites requests into the
/// tenant's key namespace and answers out of it, for every service the
/// gateway forwards (KV, Watch, Lease, Lock, Election).
///
/// etcd's own `namespace` client package and grpc-proxy `--namespace` prefix
/// keys on the *client* side and cover KV, Watch and Lease only, so a tenant
/// that sends raw requests (or uses locks and elections) escapes. Here the
/// gateway rewrites on the server side, so a tenant cannot bypass it, and
/// every service goes through the methods of this type:
/// - `inbound(_:)` takes a request as the tenant sent it (keys in the tenant's
///   view) and returns the request to send upstream, or throws the exact
///   error etcd would answer (empty key, permission, unknown lease);
/// - `outbound(_:)` takes the upstream answer and returns the tenant's view.
///
/// Properties (checked by the property tests):
/// 1. Every key and key range of a request returned by `inbound` lies in
///    `[prefix, prefixEnd(prefix))`; a tenant range never selects a key
///    outside the namespace, whatever its shape (`"\0"` from-key, a
///    `range_end` past the prefix, nested txns).
/// 2. A tenant key `k` is selected by a tenant range exactly when
///    `prefix + k` is selected by the rewritten range (rewriting keeps the
///    tenant's view of etcd's range semantics).
/// 3. `outbound` strips the prefix from every key; a key outside the
///    namespace (which a correct upstream never answers) is never passed
///    on: in a list it is dropped, in a single mandatory field the whole
///    answer is refused with `foreignKeyInAnswer`.
/// 4. Lease IDs: a lease is the tenant's when its upper 32 bits are the
///    tenant's `leaseTag` (see `Namespace+Lease.swift`); any request naming
///    another lease is answered as etcd answers for a lease that does not
///    exist, so tenants learn nothing of each other's leases.
/// 5. A read-only tenant's writes (puts, deletes, txns with a write in any
///    branch, lease grant and revoke, lock, unlock, campaign, proclaim,
///    resign) are refused with etcd's permission error.
public struct Namespace: Sendable, Equatable {
    /// The bytes every key of the tenant starts with upstream.
    public let prefix: Data
    /// The first key after the namespace (`prefixEnd(prefix)`), or `"\0"`
    /// (etcd's "to the end of the key space") when the prefix is all `0xff`.
    public let end: Data
    public let permissions: TenantPermissions
    /// The upper 32 bits of every lease ID this tenant owns (31 bits, non-zero).
    public let leaseTag: UInt32

    /// - Precondition: `prefix` is not empty and `leaseTag` is in
    ///   `1...0x7fff_ffff` (the tenants file validates both).
    public init(prefix: Data, permissions: TenantPermissions, leaseTag: UInt32) {
        precondition(!prefix.isEmpty, "a namespace needs a non-empty prefix")
        precondition(leaseTag != 0 && leaseTag <= Self.leaseTagMax, "lease tag \(leaseTag) out of range")
        self.prefix = prefix
        self.end = Self.prefixEnd(prefix)
        self.permissions = permissions
        self.leaseTag = leaseTag
    }

    /// etcd's `range_end` meaning "every key from `key` on".
    static let fromKey = Data([0])

    /// etcd's prefix end: the smallest key greater than every key starting
    /// with `prefix`; `"\0"` (to the end) when no such key exists.
    public static func prefixEnd(_ prefix: Data) -> Data {
        KeyRangeEnd.prefixEnd(of: prefix)
    }

    // MARK: keys and ranges

    /// The upstream key of a tenant key (for the cache and the watch
    /// coalescer, which key their state by upstream keys).
    public func upstreamKey(_ key: Data) -> Data {
        var result = self.prefix
        result.append(key)
        return result
    }

    /// The upstream `(key, range_end)` of a tenant range, with etcd's
    /// meaning of `range_end` kept inside the namespace:
    /// - empty: the single key `prefix + key`;
    /// - `"\0"` (from `key` to the end): up to the end of the namespace;
    /// - anything else: `[prefix + key, prefix + range_end)`, which always
    ///   ends inside the namespace; it is clamped to `end` all the same,
    ///   so no arithmetic slip can ever widen a range past the prefix.
    public func upstreamRange(key: Data, rangeEnd: Data) -> (key: Data, rangeEnd: Data) {
        let key = self.upstreamKey(key)
        if rangeEnd.isEmpty { return (key, Data()) }
        if rangeEnd == Self.fromKey { return (key, self.end) }
        return (key, self.clamped(self.upstreamKey(rangeEnd)))
    }

    /// `rangeEnd` if it ends inside the namespace, else the namespace's end.
    private func clamped(_ rangeEnd: Data) -> Data {
        if self.end == Self.fromKey { return rangeEnd }
        return rangeEnd.lexicographicallyPrecedes(self.end) ? rangeEnd : self.end
    }

    /// Whether an upstream key lies in the namespace. Compared over raw
    /// bytes: it runs for every key of every answer and watch event.
    public func contains(_ upstreamKey: Data) -> Bool {
        let count = self.prefix.count
        guard upstreamKey.count >= count else { return false }
        return upstreamKey.withUnsafeBytes { key in
            self.prefix.withUnsafeBytes { prefix in key.prefix(count).elementsEqual(prefix) }
        }
    }

    /// The tenant's view of an upstream key, or nil when it lies outside.
    public func tenantKey(_ upstreamKey: Data) -> Data? {
        guard self.contains(upstreamKey) else { return nil }
        let start = upstreamKey.startIndex + self.prefix.count
        return upstreamKey.subdata(in: start..<upstreamKey.endIndex)
    }

    /// The tenant's view of a key-value, or nil when its key lies outside.
    func tenantKeyValue(_ keyValue: Mvccpb_KeyValue) -> Mvccpb_KeyValue? {
        guard let key = self.tenantKey(keyValue.key) else { return nil }
        var result = keyValue
        result.key = key
        return result
    }

    /// The tenant's view of a list of key-values: foreign ones dropped
    /// (property 3); also returns how many were dropped.
    func tenantKeyValues(_ keyValues: [Mvccpb_KeyValue]) -> (kept: [Mvccpb_KeyValue], dropped: Int) {
        var kept: [Mvccpb_KeyValue] = []
        kept.reserveCapacity(keyValues.count)
        for keyValue in keyValues {
            if let stripped = self.tenantKeyValue(keyValue) { kept.append(stripped) }
        }
        return (kept, keyValues.count - kept.count)
    }

    /// The tenant's view of a single mandatory key, or the refusal of the
    /// whole answer (property 3).
    func requiredTenantKey(_ upstreamKey: Data) throws(RPCStatus) -> Data {
        guard let key = self.tenantKey(upstreamKey) else { throw Refusal.foreignKeyInAnswer }
        return key
    }

    // MARK: permissions

    /// Throws etcd's permission error when the tenant may only read.
    func requireWrite(_ refusal: RPCStatus = Refusal.permissionDenied) throws(RPCStatus) {
        if self.permissions == .read { throw refusal }
    }
}

extension Namespace {
    /// The errors the namespace answers, each exactly as etcd words it, so
    /// clients branch on them as they do against etcd.
    public enum Refusal {
        /// An empty key where etcd requires one.
        public static let keyNotProvided = EtcdServerError.keyNotProvided.status
        /// A write by a read-only tenant, or a cluster-wide call (compaction).
        public static let permissionDenied = EtcdServerError.permissionDenied.status
        /// A lease that is not the tenant's: etcd's answer for a lease that
        /// does not exist.
        public static let leaseNotFound = EtcdServerError.leaseNotFound.status
        /// etcd's lock and election servers call etcd through its own client,
        /// so their errors reach callers with code `unknown` and etcd's text.
        public static let coordinationKeyNotProvided = RPCStatus(.unknown, keyNotProvided.message)
        public static let coordinationPermissionDenied = RPCStatus(.unknown, permissionDenied.message)
        public static let coordinationLeaseNotFound = RPCStatus(.unknown, leaseNotFound.message)
        /// An upstream answer carried a key outside the namespace in a field
        /// that cannot be dropped; a correct upstream never does this.
        public static let foreignKeyInAnswer = RPCStatus(
            .internal, "gateway: the cluster answered a key outside the tenant's namespace")
    }

    /// The largest lease tag: 31 bits, so tagged lease IDs stay positive.
    public static let leaseTagMax: UInt32 = 0x7fff_ffff
}

/// What the gateway does with a request whose answer it must not ask the
/// cluster for: forward it, or answer it itself.
///
/// Used where etcd answers a lease that does not exist with a normal
/// response rather than an error (`LeaseKeepAlive` answers TTL 0,
/// `LeaseTimeToLive` answers TTL -1): for a lease of another tenant the
/// gateway gives that same response, so nothing leaks. The caller fills the
/// response's `header` (etcd fills it from the member answering) from the
/// latest header it has seen upstream.
public enum Forwarding<Request: Sendable, Response: Sendable>: Sendable {
    case forward(Request)
    case answer(Response)
}

extension Forwarding: Equatable where Request: Equatable, Response: Equatable {}
