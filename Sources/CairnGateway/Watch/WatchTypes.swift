import CairnAPI
import CairnRPC
import Foundation
import NIOCore

/// Limits and timings of the gateway's watch coalescing.
public struct WatchCoalescerConfiguration: Sendable {
    /// Events each shared broadcast keeps for late joiners: a joiner whose
    /// start revision falls inside this window is served from memory; older
    /// joiners get their own upstream watch until they catch up. At the bound
    /// the oldest response is dropped and the window's floor moves up.
    public var recentEventsMax = 1_000
    /// Pause before re-opening a tenant's upstream stream after it broke;
    /// doubles per consecutive failure up to `resumeDelayMax`.
    public var resumeDelay: TimeAmount = .milliseconds(100)
    public var resumeDelayMax: TimeAmount = .seconds(2)
    /// Consecutive upstream streams that end without a single answer (or no
    /// connection at all) before every watch of the tenant is cancelled.
    public var resumeAttemptsMax = 10
    /// Whether the upstream answers progress requests in sync with its event
    /// stream (Cairn members, etcd ≥ 3.4.25). etcd before 3.4.25 may answer a
    /// progress request before events of lower revisions: set `false` in
    /// front of it, and only events then advance a broadcast's position
    /// (catch-ups then switch onto the broadcast on events alone).
    public var upstreamProgressIsSynced = true

    public init() {}
}

/// Limits and timings of one client's Watch stream.
public struct WatchSessionConfiguration: Sendable {
    /// Responses one client watch may have waiting for a slow reader (held
    /// behind an unanswered create, or queued while the stream is not
    /// writable). At the bound the watch is cancelled with a reason naming
    /// this limit; the client's other watches and other clients go on.
    public var clientBufferedResponsesMax = 1_024
    /// Responses are split into fragments above this size when the client
    /// asked for `fragment` (etcd's `--max-request-bytes` default).
    public var fragmentBytesMax = 1_572_864
    /// How often watches created with `progress_notify` get an empty
    /// response when no event reached them (etcd's default: 10 minutes).
    public var progressNotifyInterval: TimeAmount = .minutes(10)

    public init() {}
}

/// What a subscriber of the coalescer receives, in order, on the
/// coalescer's event loop.
public enum WatchDelivery: Sendable {
    /// The watch is established; `header.revision` is the revision it was
    /// created at (a start-from-now watch sees only events after it).
    case created(Etcdserverpb_ResponseHeader)
    /// Events of whole revisions in revision order, or (no events) a progress
    /// notification: every event up to `header.revision` has been delivered.
    /// `watchID` is the coalescer's upstream ID: subscribers set their own.
    case response(Etcdserverpb_WatchResponse)
    /// The watch is over; nothing follows.
    case ended(WatchEnd)
}

/// Why a subscription ended.
public enum WatchEnd: Sendable, Equatable {
    /// The start revision has been compacted (etcd's `compact_revision` cancel).
    case compacted(compactRevision: Int64)
    /// The upstream refused or lost the watch, or the client was too slow.
    case canceled(reason: String)
    /// The tenant already has as many open watches as it may.
    case watchLimitReached(reason: String)
}

/// A subscription's handle on the coalescer.
public typealias WatchSubscriptionID = Int

/// Client and upstream watch counts of one tenant, for the gateway's gauges
/// (`cairn_gateway_client_watches`, `cairn_gateway_upstream_watches`).
public struct WatchTenantGauges: Sendable, Equatable {
    /// Subscriptions: client watches and internal subscribers (read cache).
    public var clientWatches = 0
    /// Watches open (or being opened) upstream: shared broadcasts and the
    /// private watches of late joiners catching up.
    public var upstreamWatches = 0
    /// Of `upstreamWatches`, the private catch-up watches.
    public var catchUpWatches = 0

    public init() {}
}

/// The messages a client sees when the gateway ends or refuses a watch.
enum WatchReason {
    static func tooSlow(_ bound: Int) -> String {
        "cairn gateway: watch canceled: the client is not reading its watch stream fast enough "
            + "(clientBufferedResponsesMax = \(bound) responses waiting)"
    }

    static func watchLimit(_ bound: Int) -> String {
        "cairn gateway: too many open watches for this tenant (limits.watches = \(bound))"
    }

    static func upstreamLost(_ status: String) -> String {
        "cairn gateway: watch canceled: the upstream watch could not be resumed (\(status))"
    }

    static let duplicateWatchID = "mvcc: duplicate watch ID provided on the WatchStream"
    static let emptyRange = "mvcc: watcher range is empty"
    static let gatewayShutdown = "cairn gateway: shutting down"

    /// How grpc-go prints a status (`rpc error: code = PermissionDenied desc = …`);
    /// etcd puts that text in `cancel_reason` for a refused create.
    static func grpcText(_ status: RPCStatus) -> String {
        "rpc error: code = \(Self.goName(status.code)) desc = \(status.message)"
    }

    /// grpc-go's name of a status code (`codes.Code.String()`).
    static func goName(_ code: RPCStatus.Code) -> String {
        switch code {
        case .ok: "OK"
        case .cancelled: "Canceled"
        case .unknown: "Unknown"
        case .invalidArgument: "InvalidArgument"
        case .deadlineExceeded: "DeadlineExceeded"
        case .notFound: "NotFound"
        case .alreadyExists: "AlreadyExists"
        case .permissionDenied: "PermissionDenied"
        case .resourceExhausted: "ResourceExhausted"
        case .failedPrecondition: "FailedPrecondition"
        case .aborted: "Aborted"
        case .outOfRange: "OutOfRange"
        case .unimplemented: "Unimplemented"
        case .internal: "Internal"
        case .unavailable: "Unavailable"
        case .dataLoss: "DataLoss"
        case .unauthenticated: "Unauthenticated"
        }
    }
}

/// The identity of a shareable watch: one tenant, and the create request's
/// shape after the tenant's namespace rewrite. Two client watches with the
/// same key share one upstream watch.
struct BroadcastKey: Hashable, Sendable {
    var tenant: String
    var key: Data
    var rangeEnd: Data
    /// Sorted and deduplicated (`[NOPUT, NOPUT]` filters what `[NOPUT]` does).
    var filters: [Int]
    var prevKV: Bool

    init(tenant: String, request: Etcdserverpb_WatchCreateRequest) {
        self.tenant = tenant
        // etcd treats an empty key as "\0", the smallest key.
        self.key = request.key.isEmpty ? Data([0]) : request.key
        self.rangeEnd = request.rangeEnd
        self.filters = Array(Set(request.filters.map(\.rawValue))).sorted()
        self.prevKV = request.prevKv
    }

    /// The create request for the upstream: this shape, with the given start.
    func upstreamRequest(startRevision: Int64) -> Etcdserverpb_WatchCreateRequest {
        var request = Etcdserverpb_WatchCreateRequest()
        request.key = self.key
        request.rangeEnd = self.rangeEnd
        request.filters = self.filters.compactMap {
            Etcdserverpb_WatchCreateRequest.FilterType(rawValue: $0)
        }
        request.prevKv = self.prevKV
        request.startRevision = startRevision
        return request
    }
}
