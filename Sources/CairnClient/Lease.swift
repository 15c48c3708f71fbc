import CairnAPI
import CairnRPC
import NIOCore

extension EtcdClient {
    // MARK: Lease

    /// Grants a lease of `ttl` seconds; `id` 0 lets the server choose the ID.
    public func grantLease(ttl: Int64, id: Int64 = 0) async throws -> Etcdserverpb_LeaseGrantResponse {
        var request = Etcdserverpb_LeaseGrantRequest()
        request.ttl = ttl
        request.id = id
        return try await self.unary(EtcdLease.leaseGrant, request)
    }

    /// Revokes a lease, deleting every key attached to it.
    @discardableResult
    public func revokeLease(_ id: Int64) async throws -> Etcdserverpb_LeaseRevokeResponse {
        var request = Etcdserverpb_LeaseRevokeRequest()
        request.id = id
        return try await self.unary(EtcdLease.leaseRevoke, request)
    }

    /// The lease's remaining and granted TTL; with `keys`, its attached keys.
    /// etcd answers `ttl == -1` for a lease that does not exist.
    public func leaseTimeToLive(_ id: Int64, keys: Bool = false) async throws
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        var request = Etcdserverpb_LeaseTimeToLiveRequest()
        request.id = id
        request.keys = keys
        return try await self.unary(EtcdLease.leaseTimeToLive, request)
    }

    /// The IDs of all leases.
    public func leases() async throws -> [Int64] {
        try await self.unary(EtcdLease.leaseLeases, Etcdserverpb_LeaseLeasesRequest()).leases.map(\.id)
    }

    /// Keeps a lease alive over a LeaseKeepAlive stream, one refresh per
    /// element: the first at once, then every third of the TTL the server
    /// last answered (as etcd's clientv3 does), so two refreshes may be lost
    /// before the lease expires.
    ///
    /// Refreshes happen only while the sequence is iterated; stopping
    /// iteration stops them and closes the stream. Ends with
    /// `LeaseKeepAliveError.leaseExpired` when the lease is gone.
    public func keepAlive(_ id: Int64) -> LeaseKeepAlive {
        LeaseKeepAlive(client: self, id: id)
    }

    /// Keeps `id` alive until the calling task is cancelled, then returns.
    ///
    /// Structured on purpose: run it as a child task (`async let`, a task
    /// group) whose cancellation ends the refreshes, rather than leaving an
    /// unowned background task behind.
    /// - Throws: `LeaseKeepAliveError` if the lease expires or the stream breaks.
    public func keepAliveUntilCancelled(_ id: Int64) async throws {
        do {
            for try await _ in self.keepAlive(id) {}
        } catch is CancellationError {
            return
        }
    }
}

/// The refreshes of one lease, as an async sequence of the server's answers.
public struct LeaseKeepAlive: AsyncSequence, Sendable {
    public typealias Element = Etcdserverpb_LeaseKeepAliveResponse

    let client: EtcdClient
    let id: Int64

    /// Shortest pause between refreshes, whatever the TTL: a 1 s lease would
    /// otherwise be refreshed every 333 ms.
    static let refreshIntervalMin = Duration.milliseconds(500)

    public func makeAsyncIterator() -> Iterator {
        Iterator(client: self.client, id: self.id)
    }

    /// Sends one refresh per `next()`, waiting until it is due.
    public struct Iterator: AsyncIteratorProtocol {
        let client: EtcdClient
        let id: Int64
        var call: KeepAliveCall?
        var answers: AsyncThrowingStream<Etcdserverpb_LeaseKeepAliveResponse, any Error>.Iterator?
        var nextRefresh: ContinuousClock.Instant?

        init(client: EtcdClient, id: Int64) {
            self.client = client
            self.id = id
        }

        public mutating func next() async throws -> Etcdserverpb_LeaseKeepAliveResponse? {
            if let nextRefresh { try await Task.sleep(until: nextRefresh, clock: .continuous) }
            if self.call == nil {
                let call = KeepAliveCall(client: self.client)
                self.call = call
                self.answers = call.answers.makeAsyncIterator()
            }
            guard let call = self.call else { return nil }
            var request = Etcdserverpb_LeaseKeepAliveRequest()
            request.id = self.id
            call.stream.send(request)
            guard let answer = try await self.answers?.next() else { return nil }
            guard answer.ttl > 0 else { throw LeaseKeepAliveError.leaseExpired(id: self.id) }
            let interval = Swift.max(Duration.seconds(answer.ttl) / 3, LeaseKeepAlive.refreshIntervalMin)
            self.nextRefresh = .now + interval
            return answer
        }
    }
}

/// One LeaseKeepAlive stream; closed when the iterator owning it goes away.
final class KeepAliveCall: Sendable {
    /// Only one refresh is ever in flight, so one answer is all that can wait.
    static let answersBufferedMax = 1

    let stream: RPCClientStream<Etcdserverpb_LeaseKeepAliveRequest>
    let answers: AsyncThrowingStream<Etcdserverpb_LeaseKeepAliveResponse, any Error>

    init(client: EtcdClient) {
        let (answers, continuation) = AsyncThrowingStream.makeStream(
            of: Etcdserverpb_LeaseKeepAliveResponse.self,
            bufferingPolicy: .bufferingNewest(Self.answersBufferedMax))
        self.answers = answers
        var options = client.streamOptions()
        options.waitForReady = true
        self.stream = client.rpc.connection().openStream(
            EtcdLease.leaseKeepAlive, options: options,
            onResponse: { answer in continuation.yield(answer) },
            onClose: { status in
                continuation.finish(throwing: LeaseKeepAliveError.streamClosed(status))
            })
    }

    deinit {
        self.stream.cancel()
    }
}
