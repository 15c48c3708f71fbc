import CairnRPC

/// The common errors an etcd server reports, recognised from an `RPCStatus`.
///
/// Calls throw the server's `RPCStatus` unchanged (code and exact message),
/// because etcd clients and tools match on the message text; this enum is a
/// convenience for `switch`ing on the frequent cases without string literals
/// scattered through callers. Matching is on code and exact message, as in
/// etcd's own client (`rpctypes.Error`).
public enum EtcdServerError: Sendable, Equatable, CaseIterable {
    case compacted
    case futureRevision
    case leaseNotFound
    case keyNotProvided
    case tooManyOperations
    case duplicateKey
    case noLeader
    case requestTooLarge
    case invalidAuthToken
    case permissionDenied

    /// The status etcd sends for this error: its gRPC code and its message.
    public var status: RPCStatus {
        switch self {
        case .compacted: RPCStatus(.outOfRange, "etcdserver: mvcc: required revision has been compacted")
        case .futureRevision:
            RPCStatus(.outOfRange, "etcdserver: mvcc: required revision is a future revision")
        case .leaseNotFound: RPCStatus(.notFound, "etcdserver: requested lease not found")
        case .keyNotProvided: RPCStatus(.invalidArgument, "etcdserver: key is not provided")
        case .tooManyOperations: RPCStatus(.invalidArgument, "etcdserver: too many operations in txn request")
        case .duplicateKey: RPCStatus(.invalidArgument, "etcdserver: duplicate key given in txn request")
        case .noLeader: RPCStatus(.unavailable, "etcdserver: no leader")
        case .requestTooLarge: RPCStatus(.invalidArgument, "etcdserver: request is too large")
        case .invalidAuthToken: RPCStatus(.unauthenticated, "etcdserver: invalid auth token")
        case .permissionDenied: RPCStatus(.permissionDenied, "etcdserver: permission denied")
        }
    }

    /// The known error `status` carries, if any.
    public init?(_ status: RPCStatus) {
        guard let known = Self.allCases.first(where: { $0.status == status }) else { return nil }
        self = known
    }
}

extension RPCStatus {
    /// The well-known etcd error this status is, if any (see `EtcdServerError`).
    public var etcdError: EtcdServerError? { EtcdServerError(self) }
}

/// Why a watch ended other than by its consumer stopping.
///
/// A watch is a long-lived subscription, so its failures are distinct from a
/// unary call's: the server may cancel it (compaction), the client may give up
/// on a consumer that does not keep up, or the shared stream may break.
public enum WatchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The requested start revision was compacted; watching again must start
    /// at `compactRevision` or later (etcd's `ErrCompacted`).
    case compacted(compactRevision: Int64)
    /// The server cancelled the watch, with its reason (may be empty).
    case canceledByServer(reason: String)
    /// The consumer fell behind by more than `bufferedResponsesMax` responses;
    /// the watch was cancelled rather than buffering without bound or dropping
    /// events silently. Responses received before the overflow were delivered.
    case consumerTooSlow(bufferedResponsesMax: Int)
    /// The shared watch stream closed (connection lost, server shut down,
    /// client shut down) with this status.
    case streamClosed(RPCStatus)

    public var description: String {
        switch self {
        case .compacted(let revision):
            "\(EtcdServerError.compacted.status.message) (compact revision \(revision))"
        case .canceledByServer(let reason):
            "etcdserver: watch canceled by the server\(reason.isEmpty ? "" : ": \(reason)")"
        case .consumerTooSlow(let bound):
            "watch canceled: the consumer fell more than \(bound) responses behind"
        case .streamClosed(let status):
            "watch stream closed: \(status)"
        }
    }
}

/// Why a lease keep-alive ended.
public enum LeaseKeepAliveError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered with TTL 0 or less: the lease expired or was revoked.
    case leaseExpired(id: Int64)
    /// The keep-alive stream closed with this status.
    case streamClosed(RPCStatus)

    public var description: String {
        switch self {
        case .leaseExpired(let id): "lease \(id) expired or was revoked"
        case .streamClosed(let status): "lease keep-alive stream closed: \(status)"
        }
    }
}
