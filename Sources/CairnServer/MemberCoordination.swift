import CairnAPI
import CairnCore
import CairnMVCC
import CairnRPC
import CairnStateMachine
import NIOCore

/// What etcd's v3lock and v3election servers take from clientv3's
/// `concurrency` package, built server-side over the member's own KV,
/// leases and watch hub (no client, no polling):
/// - an owner key per lease: `<name>/<lease ID in hex>`;
/// - `session`: the lease a request names, or a new 60-second one for 0;
/// - `waitDeletes` (`DeletionWaiter`): wait until every key under a prefix
///   created at or below a revision is deleted.
extension MemberServices {
    /// etcd's default session TTL, granted when a request names lease 0.
    static let sessionTTLSeconds: Int64 = 60
    /// Watch streams (client watches, lock and campaign waiters, observers)
    /// beyond which a new waiter is refused with "too many requests".
    static let coordinationStreamsMax = 10_000

    /// `<prefix><lease ID in hex>`, as etcd's `fmt.Sprintf("%s%x", ...)`.
    static func ownerKey(prefix: Key, lease: LeaseID) -> Key {
        Key(prefix.bytes + Array(String(lease.rawValue, radix: 16).utf8))
    }

    /// `<name>/`: the prefix every contender of `name` puts its key under.
    static func contendersPrefix(_ name: [UInt8]) -> Key {
        Key(name + Array("/".utf8))
    }

    /// The first-created key under `prefix` (clientv3's `WithFirstCreate`).
    static func firstCreated(_ prefix: Key) -> RangeRequest {
        RangeRequest(
            key: prefix, rangeEnd: KeyRange.prefixEnd(of: prefix), limit: 1, sortOrder: .ascend,
            sortTarget: .create)
    }

    /// etcd's session for a request: lease 0 grants a fresh lease with the
    /// default TTL (and orphans it, as etcd's server does); any other ID is
    /// used as given, and a put under an unknown one fails with
    /// "etcdserver: requested lease not found".
    func session(lease: Int64) -> EventLoopFuture<LeaseID> {
        guard lease == LeaseID.none.rawValue else {
            return self.member.eventLoop.makeSucceededFuture(LeaseID(lease))
        }
        return self.write(.leaseGrant(id: .none, ttlSeconds: Self.sessionTTLSeconds)) { response, _ in
            guard case .leaseGrant(let id, _) = response else { throw Self.unexpected(response) }
            return id
        }
    }

    /// etcd's lock and election servers call etcd through its own client,
    /// whose errors reach their callers as plain errors: etcd's text with
    /// gRPC code `unknown` (a client's own cancellation or deadline keeps
    /// its code).
    static func clientStatus(for error: any Error) -> RPCStatus {
        let status = Self.status(for: error)
        switch status.code {
        case .cancelled, .deadlineExceeded, .unknown: return status
        default: return RPCStatus(.unknown, status.message)
        }
    }

    /// Proposes a txn and answers its response, mapping failures to statuses.
    func proposeTxn(_ request: TxnRequest) -> EventLoopFuture<TxnResponse> {
        self.write(.txn(request)) { response, _ in
            guard case .txn(let txn) = response else { throw Self.unexpected(response) }
            return txn
        }
    }

    /// The key values of a txn's `index`th response, which must be a range.
    static func rangeKeyValues(_ txn: TxnResponse, _ index: Int) throws -> [KeyValue] {
        guard index < txn.responses.count, case .range(let range) = txn.responses[index] else {
            throw RPCStatus(.internal, "txn answered no range at \(index)")
        }
        return range.keyValues
    }
}

/// Ends a waiting call when its client goes away or its deadline passes,
/// as a Go context's cancellation does. Touched only on the member's
/// executor; `arm` is called on the call's event loop.
final class CallCancellation: @unchecked Sendable {
    enum State {
        case waiting(onCancel: (() -> Void)?)
        case cancelled
        case done
    }

    private let executor: any EventLoop
    private var state = State.waiting(onCancel: nil)
    private var deadlineTask: Scheduled<Void>?

    init(executor: any EventLoop) {
        self.executor = executor
    }

    /// Hooks the call's cancellation and deadline (on the call's loop).
    func arm(_ context: RPCContext) {
        context.onCancel { [self] in self.executor.execute { self.cancel() } }
        if let deadline = context.deadline {
            self.executor.execute {
                guard case .waiting = self.state else { return }
                self.deadlineTask = self.executor.scheduleTask(deadline: deadline) { self.cancel() }
            }
        }
    }

    var isCancelled: Bool {
        if case .cancelled = self.state { return true }
        return false
    }

    /// Runs `body` at cancellation (at once if already cancelled).
    func onCancel(_ body: @escaping () -> Void) {
        switch self.state {
        case .waiting: self.state = .waiting(onCancel: body)
        case .cancelled: body()
        case .done: break
        }
    }

    /// The call answered: nothing runs at a later cancellation.
    func finish() {
        self.state = .done
        self.deadlineTask?.cancel()
        self.deadlineTask = nil
    }

    private func cancel() {
        guard case .waiting(let body) = self.state else { return }
        self.state = .cancelled
        self.deadlineTask?.cancel()
        self.deadlineTask = nil
        body?()
    }
}

/// etcd's `waitDeletes`, on the member's executor: completes with the
/// revision of a read that found no key under `prefix` created at or
/// below `maxCreateRevision`.
///
/// Like etcd it reads the last-created such key and watches it (from the
/// read's revision) until it is deleted, then reads again. Beyond etcd, a
/// second watch on the waiter's own key ends the wait with "requested lease
/// not found" once the waiter's lease is gone (its key went with it), so a
/// waiter whose lease expired does not wait on, or later "acquire", nothing.
///
/// Properties:
/// 1. Touched only on the member's executor.
/// 2. `promise` completes exactly once; then the watch stream is closed.
/// 3. At most one predecessor watch is current; responses of older ones
///    are ignored.
final class DeletionWaiter: @unchecked Sendable {
    enum State {
        case opening
        case waiting(stream: WatchStreamID)
        case finished
    }

    /// The watch on the waiter's own key.
    static let ownKeyWatch = WatchID(1)

    private let member: Member
    private let prefix: Key
    private let maxCreateRevision: Int64
    private let ownKey: Key
    private let lease: LeaseID
    private let promise: EventLoopPromise<Int64>
    private var state = State.opening
    private var predecessorWatch = WatchID(1)

    init(member: Member, prefix: Key, maxCreateRevision: Int64, ownKey: Key, lease: LeaseID) {
        self.member = member
        self.prefix = prefix
        self.maxCreateRevision = maxCreateRevision
        self.ownKey = ownKey
        self.lease = lease
        self.promise = member.eventLoop.makePromise(of: Int64.self)
    }

    /// Starts waiting (executor only); the future completes on the executor.
    func start() -> EventLoopFuture<Int64> {
        guard self.member.watchDeliveries.count < MemberServices.coordinationStreamsMax else {
            self.finish(.failure(CairnError.tooManyRequests))
            return self.promise.futureResult
        }
        let startRevision = self.member.stateMachine.status.revision + 1
        self.member.openWatchStream(
            send: { [self] batch in self.received(batch) },
            close: { [self] in self.finish(.failure(CairnError.stopped)) }
        ).whenSuccess { [self] streamID in
            guard case .opening = self.state else {
                self.member.closeWatchStream(streamID)
                return
            }
            self.state = .waiting(stream: streamID)
            self.member.watchCreate(
                WatchCreateRequest(
                    key: self.ownKey, startRevision: startRevision, noPut: true, watchID: Self.ownKeyWatch),
                stream: streamID)
            self.readPredecessor(streamID)
        }
        return self.promise.futureResult
    }

    /// Ends the wait (client cancelled, deadline passed).
    func cancel(_ error: any Error) {
        self.finish(.failure(error))
    }

    /// Reads the last-created earlier key; none left means the wait is over.
    private func readPredecessor(_ streamID: WatchStreamID) {
        guard self.member.stateMachine.lessor.isGranted(self.lease) else {
            self.finish(.failure(CairnError.leaseNotFound))
            return
        }
        let request = RangeRequest(
            key: self.prefix, rangeEnd: KeyRange.prefixEnd(of: self.prefix), limit: 1, sortOrder: .descend,
            sortTarget: .create, maxCreateRevision: self.maxCreateRevision)
        let response: RangeResponse
        do {
            response = try self.member.stateMachine.store.range(request)
        } catch {
            self.finish(.failure(error))
            return
        }
        guard let last = response.keyValues.first else {
            self.finish(.success(response.revision))
            return
        }
        self.predecessorWatch = WatchID(self.predecessorWatch.rawValue + 1)
        self.member.watchCreate(
            WatchCreateRequest(
                key: last.key, startRevision: response.revision, noPut: true, watchID: self.predecessorWatch),
            stream: streamID)
    }

    /// A batch of watch responses for this waiter's stream (executor).
    private func received(_ batch: [WatchResponse]) {
        guard case .waiting(let streamID) = self.state else { return }
        var predecessorDeleted = false
        for response in batch {
            let current = response.watchID == Self.ownKeyWatch || response.watchID == self.predecessorWatch
            if response.canceled {
                // Cancels of replaced watches are expected; compaction under
                // a current one ends the wait as etcd's watch error does.
                guard current, response.compactRevision != 0 else { continue }
                self.finish(.failure(CairnError.compacted))
                return
            }
            let deleted = response.events.contains { $0.kind == .delete }
            if response.watchID == Self.ownKeyWatch, deleted,
                !self.member.stateMachine.lessor.isGranted(self.lease)
            {
                self.finish(.failure(CairnError.leaseNotFound))
                return
            }
            if response.watchID == self.predecessorWatch, deleted { predecessorDeleted = true }
        }
        if predecessorDeleted {
            self.member.watchCancel(self.predecessorWatch, stream: streamID)
            self.readPredecessor(streamID)
        }
        guard case .waiting = self.state else { return }
        self.member.watchStreamReady(streamID)
    }

    private func finish(_ result: Result<Int64, any Error>) {
        let previous = self.state
        guard !Self.isFinished(previous) else { return }
        self.state = .finished
        if case .waiting(let streamID) = previous { self.member.closeWatchStream(streamID) }
        self.promise.completeWith(result)
    }

    private static func isFinished(_ state: State) -> Bool {
        if case .finished = state { return true }
        return false
    }
}
