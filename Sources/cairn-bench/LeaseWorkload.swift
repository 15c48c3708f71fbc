import ArgumentParser
import CairnAPI
import CairnClient
import CairnRPC
import Foundation
import Synchronization

/// `lease-keepalive`: each client grants a lease, then refreshes it as fast
/// as the server answers.
///
/// etcd's tool calls `KeepAliveOnce`, which opens a LeaseKeepAlive stream
/// per refresh; here each client keeps one stream open and sends one refresh
/// per answer, which is how a real client keeps its lease (clientv3's
/// `KeepAlive`), so the figure is the server's refresh cost rather than
/// stream setup.
struct LeaseKeepAliveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease-keepalive", abstract: "Benchmark lease keepalive.")

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Total number of lease keepalive requests.")
    var total = 10_000

    @Option(help: "Maximum keepalives per second (0 is no limit).")
    var rate = 0

    /// TTL of the benchmark's leases: long enough to never expire during a run.
    static let leaseTTLSeconds: Int64 = 100

    func run() async throws {
        let client = try self.connection.makeClient()
        var leases: [Int64] = []
        for _ in 0..<self.connection.clients {
            leases.append(try await client.grantLease(ttl: Self.leaseTTLSeconds).id)
        }
        // Driver task i uses stream i, so each stream has one refresh in flight.
        let keepers = leases.map { KeepAliveStream(client: client, lease: $0) }
        let result = try await ClosedLoop.run(
            workload: "lease-keepalive", options: self.connection, total: self.total, rate: self.rate,
            operations: ["keepalive"]
        ) { request in
            try await keepers[request.client].refresh()
        }
        for keeper in keepers { keeper.close() }
        for lease in leases { _ = try? await client.revokeLease(lease) }
        await client.shutdown()
        try result.print(json: self.connection.json)
    }
}

/// One open LeaseKeepAlive stream with at most one refresh in flight.
///
/// Properties:
/// 1. Only one driver task uses a stream, so at most one continuation waits
///    in `inbox` at a time.
/// 2. Once the stream has closed, every refresh fails with its status.
final class KeepAliveStream: Sendable {
    let lease: Int64
    private let inbox = Inbox()
    private let stream: RPCClientStream<Etcdserverpb_LeaseKeepAliveRequest>

    init(client: EtcdClient, lease: Int64) {
        self.lease = lease
        let inbox = self.inbox
        let options = RPCCallOptions(timeout: nil, waitForReady: true)
        self.stream = client.rpc.connection().openStream(
            EtcdLease.leaseKeepAlive, options: options,
            onResponse: { response in inbox.deliver(.success(response)) },
            onClose: { status in inbox.deliver(.failure(status)) })
    }

    func refresh() async throws {
        var message = Etcdserverpb_LeaseKeepAliveRequest()
        message.id = self.lease
        let request = message
        let answer = try await withCheckedThrowingContinuation { continuation in
            if self.inbox.wait(continuation) { self.stream.send(request) }
        }
        guard answer.ttl > 0 else { throw BenchError("lease \(self.lease) expired") }
    }

    func close() {
        self.stream.finish()
    }

    /// Where the stream's callbacks leave answers for the waiting refresh.
    final class Inbox: Sendable {
        typealias Waiter = CheckedContinuation<Etcdserverpb_LeaseKeepAliveResponse, any Error>
        struct State {
            var waiter: Waiter?
            var closed: RPCStatus?
        }
        private let state = Mutex(State())

        /// Parks `waiter`; `false` (and `waiter` resumed) if the stream closed.
        func wait(_ waiter: Waiter) -> Bool {
            let closed = self.state.withLock { state -> RPCStatus? in
                if let closed = state.closed { return closed }
                state.waiter = waiter
                return nil
            }
            guard let closed else { return true }
            waiter.resume(throwing: closed)
            return false
        }

        func deliver(_ result: Result<Etcdserverpb_LeaseKeepAliveResponse, RPCStatus>) {
            let waiter = self.state.withLock { state -> Waiter? in
                if case .failure(let status) = result { state.closed = status }
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(with: result.mapError { $0 as any Error })
        }
    }
}
