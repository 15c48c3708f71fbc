import CairnAPI
import CairnRPC
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

@testable import CairnGateway

/// A `WatchResponseWriter` whose writability the test controls, recording
/// what the session sends. Used on its event loop only.
final class WatchTestWriter: WatchResponseWriter {
    let eventLoop: any EventLoop
    let log: NIOLockedValueBox<[Etcdserverpb_WatchResponse]>
    var onWritable: (() -> Void)?
    var writable = true
    var finished = false

    init(eventLoop: any EventLoop, log: NIOLockedValueBox<[Etcdserverpb_WatchResponse]>) {
        self.eventLoop = eventLoop
        self.log = log
    }

    var isWritable: Bool { self.writable }

    func send(_ response: Etcdserverpb_WatchResponse) -> Bool {
        guard !self.finished else { return false }
        self.log.withLockedValue { $0.append(response) }
        return true
    }

    func finish(_ status: RPCStatus) {
        self.finished = true
    }
}

/// One gateway client: a `WatchSession` driven directly, as the RPC server
/// would drive it, with a `WatchTestWriter` recording its responses.
final class WatchTestClient: Sendable {
    let loop: any EventLoop
    let log = NIOLockedValueBox<[Etcdserverpb_WatchResponse]>([])
    private let box: NIOLoopBoundBox<(session: WatchSession, writer: WatchTestWriter)?>

    init(
        coalescer: WatchCoalescer, tenant: String = "alice", watchesMax: Int = .max,
        configuration: WatchSessionConfiguration = .init(), limitCount: NIOLockedValueBox<Int>? = nil
    ) async throws {
        self.loop = coalescer.eventLoop
        self.box = NIOLoopBoundBox.makeEmptyBox(eventLoop: coalescer.eventLoop)
        try await self.loop.submit { [log, box] in
            let writer = WatchTestWriter(eventLoop: coalescer.eventLoop, log: log)
            let session = WatchSession(
                writer: writer, coalescer: coalescer, tenant: tenant, watchesMax: watchesMax,
                configuration: configuration, inbound: { request throws(RPCStatus) in request },
                outbound: { $0 }, onWatchLimitReached: { limitCount?.withLockedValue { $0 += 1 } })
            box.value = (session, writer)
        }.get()
    }

    /// Runs `body` with the session on its loop.
    func onSession(_ body: @escaping @Sendable (WatchSession, WatchTestWriter) -> Void) async throws {
        try await self.loop.submit { [box] in
            if let (session, writer) = box.value { body(session, writer) }
        }.get()
    }

    func create(
        _ key: String, rangeEnd: String = "", start: Int64 = 0, filters: [Int] = [], prevKV: Bool = false,
        watchID: Int64 = 0, progressNotify: Bool = false, fragment: Bool = false
    ) async throws {
        var request = Etcdserverpb_WatchRequest()
        request.createRequest.key = Data(key.utf8)
        request.createRequest.rangeEnd = Data(rangeEnd.utf8)
        request.createRequest.startRevision = start
        request.createRequest.filters = filters.compactMap { .init(rawValue: $0) }
        request.createRequest.prevKv = prevKV
        request.createRequest.watchID = watchID
        request.createRequest.progressNotify = progressNotify
        request.createRequest.fragment = fragment
        let message = request
        try await self.onSession { session, _ in session.received(message) }
    }

    func cancel(_ watchID: Int64) async throws {
        var request = Etcdserverpb_WatchRequest()
        request.cancelRequest.watchID = watchID
        let message = request
        try await self.onSession { session, _ in session.received(message) }
    }

    func requestProgress() async throws {
        var request = Etcdserverpb_WatchRequest()
        request.progressRequest = Etcdserverpb_WatchProgressRequest()
        let message = request
        try await self.onSession { session, _ in session.received(message) }
    }

    func setWritable(_ writable: Bool) async throws {
        try await self.onSession { _, writer in
            writer.writable = writable
            if writable { writer.onWritable?() }
        }
    }

    /// The client went away (stream reset).
    func close() async throws {
        try await self.onSession { session, _ in session.cancelled() }
    }

    var responses: [Etcdserverpb_WatchResponse] { self.log.withLockedValue { $0 } }

    /// Revisions of the events delivered on `watchID`, in order.
    func eventRevisions(_ watchID: Int64) -> [Int64] {
        self.responses.filter { $0.watchID == watchID && !$0.created && !$0.canceled }
            .flatMap { $0.events.map(\.kv.modRevision) }
    }

    func created(_ watchID: Int64) -> Etcdserverpb_WatchResponse? {
        self.responses.first { $0.created && $0.watchID == watchID }
    }

    func canceled(_ watchID: Int64) -> Etcdserverpb_WatchResponse? {
        self.responses.first { $0.canceled && !$0.created && $0.watchID == watchID }
    }
}

/// A gateway coalescer in front of a scripted etcd over a real connection.
final class WatchHarness: Sendable {
    let etcd: ScriptedWatchEtcd
    let group: MultiThreadedEventLoopGroup
    let connection: RPCConnection
    let coalescer: WatchCoalescer

    private init(etcd: ScriptedWatchEtcd, configuration: WatchCoalescerConfiguration) {
        self.etcd = etcd
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var clientConfiguration = RPCClientConfiguration()
        clientConfiguration.backoffInitial = .milliseconds(20)
        clientConfiguration.backoffMax = .milliseconds(200)
        let loop = self.group.next()
        let connection = RPCConnection(
            host: "127.0.0.1", port: etcd.port, eventLoop: loop, configuration: clientConfiguration)
        self.connection = connection
        self.coalescer = WatchCoalescer(eventLoop: loop, configuration: configuration) { connection }
    }

    static func start(_ configuration: WatchCoalescerConfiguration = .fast) async throws -> WatchHarness {
        WatchHarness(etcd: try await ScriptedWatchEtcd.start(), configuration: configuration)
    }

    /// Runs `body` with a fresh harness and stops it afterwards, also when
    /// `body` throws.
    static func with(
        _ configuration: WatchCoalescerConfiguration = .fast, _ body: (WatchHarness) async throws -> Void
    ) async throws {
        let harness = try await Self.start(configuration)
        do {
            try await body(harness)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
    }

    func client(
        tenant: String = "alice", watchesMax: Int = .max, configuration: WatchSessionConfiguration = .init(),
        limitCount: NIOLockedValueBox<Int>? = nil
    ) async throws -> WatchTestClient {
        try await WatchTestClient(
            coalescer: self.coalescer, tenant: tenant, watchesMax: watchesMax, configuration: configuration,
            limitCount: limitCount)
    }

    func gauges(_ tenant: String = "alice") -> WatchTenantGauges {
        self.coalescer.gauges()[tenant] ?? WatchTenantGauges()
    }

    func stop() async {
        self.coalescer.shutdown()
        self.connection.shutdown()
        try? await Task.sleep(for: .milliseconds(20))
        await self.etcd.stop()
        try? await self.group.shutdownGracefully()
    }
}

extension WatchCoalescerConfiguration {
    /// Short resume delays for tests.
    static var fast: WatchCoalescerConfiguration {
        var configuration = WatchCoalescerConfiguration()
        configuration.resumeDelay = .milliseconds(20)
        configuration.resumeDelayMax = .milliseconds(100)
        return configuration
    }
}

/// Polls `condition` until it holds or `timeout` passes; the result says
/// which. A throwing condition counts as not holding yet.
func watchEventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return (try? await condition()) == true
}
