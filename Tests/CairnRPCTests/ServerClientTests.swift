import CairnAPI
import CairnTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import CairnRPC

/// A server with test methods, reached by Cairn's own client over loopback.
final class TestServer: Sendable {
    let server: RPCServer
    let port: Int
    /// Paths of calls the server saw cancelled (deadline, reset, client gone).
    let cancelledPaths = NIOLockedValueBox<[String]>([])

    init(configuration: RPCServerConfiguration = .init(), port: Int = 0) async throws {
        let cancelled = self.cancelledPaths
        var router = RPCServiceRouter()
        // Put echoes the value's length and the caller's port (to tell connections apart).
        router.unary(EtcdKV.put) { request, context in
            var response = Etcdserverpb_PutResponse()
            response.header.revision = Int64(request.value.count)
            response.header.memberID = UInt64(context.remoteAddress?.port ?? 0)
            return response
        }
        // DeleteRange fails with a status whose message needs percent-encoding.
        router.unary(EtcdKV.deleteRange) { _, _ in
            throw RPCStatus(.failedPrecondition, "etcdserver: 100% ünïcode\nmessage")
        }
        // Txn answers after the delay its request's `failure` count names, in ms.
        router.unaryFuture(EtcdKV.txn) { request, context in
            let promise = context.eventLoop.makePromise(of: Etcdserverpb_TxnResponse.self)
            let path = context.path
            context.onCancel { cancelled.withLockedValue { $0.append(path) } }
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(request.failure.count))) {
                promise.succeed(Etcdserverpb_TxnResponse())
            }
            return promise.futureResult
        }
        // Watch echoes each create request's key length as the watch ID.
        router.streaming(EtcdWatch.watch) { stream in EchoWatch(stream: stream, cancelled: cancelled) }
        // Snapshot streams `count` chunks of `size` bytes, honouring back-pressure.
        router.streaming(EtcdMaintenance.snapshot) { stream in ChunkStream(stream: stream) }
        self.server = try await RPCServer.start(
            host: "127.0.0.1", port: port, router: router, configuration: configuration)
        self.port = self.server.localAddress.port!
    }
}

final class EchoWatch: RPCStreamHandler {
    let stream: RPCServerStream<Etcdserverpb_WatchResponse>
    let cancelledPaths: NIOLockedValueBox<[String]>

    init(stream: RPCServerStream<Etcdserverpb_WatchResponse>, cancelled: NIOLockedValueBox<[String]>) {
        self.stream = stream
        self.cancelledPaths = cancelled
    }

    func received(_ request: Etcdserverpb_WatchRequest) {
        var response = Etcdserverpb_WatchResponse()
        response.watchID = Int64(request.createRequest.key.count)
        response.created = true
        self.stream.send(response)
    }

    func receivedEnd() { self.stream.finish() }

    func cancelled() {
        let path = self.stream.context.path
        self.cancelledPaths.withLockedValue { $0.append(path) }
    }
}

/// Streams 64 KiB chunks, 200 of them, writing only while the stream is writable.
final class ChunkStream: RPCStreamHandler {
    let stream: RPCServerStream<Etcdserverpb_SnapshotResponse>
    var sent = 0
    static let chunks = 200
    static let chunkBytes = 64 << 10
    /// The most response bytes the server ever had waiting at once.
    static let maxUnwritten = NIOLockedValueBox(0)

    init(stream: RPCServerStream<Etcdserverpb_SnapshotResponse>) {
        self.stream = stream
        stream.onWritable = { [weak self] in self?.pump() }
    }

    func received(_ request: Etcdserverpb_SnapshotRequest) { self.pump() }
    func receivedEnd() {}
    func cancelled() {}

    func pump() {
        while self.sent < Self.chunks && self.stream.isWritable {
            var chunk = Etcdserverpb_SnapshotResponse()
            chunk.blob = Data(repeating: UInt8(self.sent % 251), count: Self.chunkBytes)
            chunk.remainingBytes = UInt64((Self.chunks - self.sent - 1) * Self.chunkBytes)
            self.stream.send(chunk)
            self.sent += 1
            let unwritten = self.stream.call.unwrittenBytes
            Self.maxUnwritten.withLockedValue { $0 = max($0, unwritten) }
        }
        if self.sent == Self.chunks { self.stream.finish() }
    }
}

@Suite(.serialized) struct ServerClientTests {
    @Test func unaryCallRoundTripsOverLoopback() async throws {
        let server = try await TestServer()
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        var request = Etcdserverpb_PutRequest()
        request.key = Data("k".utf8)
        request.value = Data(repeating: 1, count: 300)
        let response = try await client.unary(EtcdKV.put, request)
        #expect(response.header.revision == 300)
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func unknownMethodsAndServicesAnswerUnimplemented() async throws {
        let server = try await TestServer()
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        await #expect(throws: RPCStatus(.unimplemented, "unknown method Compact for service etcdserverpb.KV"))
        {
            _ = try await client.unary(EtcdKV.compact, Etcdserverpb_CompactionRequest())
        }
        await #expect(throws: RPCStatus(.unimplemented, "unknown service etcdserverpb.Lease")) {
            _ = try await client.unary(EtcdLease.leaseGrant, Etcdserverpb_LeaseGrantRequest())
        }
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func statusCodeAndMessageSurviveTheWireExactly() async throws {
        let server = try await TestServer()
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        await #expect(throws: RPCStatus(.failedPrecondition, "etcdserver: 100% ünïcode\nmessage")) {
            _ = try await client.unary(EtcdKV.deleteRange, Etcdserverpb_DeleteRangeRequest())
        }
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func expiredDeadlineEndsTheCallOnBothSides() async throws {
        let server = try await TestServer()
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        var slow = Etcdserverpb_TxnRequest()
        slow.failure = Array(repeating: Etcdserverpb_RequestOp(), count: 2000)  // answers after 2 s
        await #expect(throws: RPCStatus(.deadlineExceeded, "context deadline exceeded")) {
            _ = try await client.unary(EtcdKV.txn, slow, options: RPCCallOptions(timeout: .milliseconds(100)))
        }
        // The server enforces the deadline it was sent, too.
        try await eventually { server.cancelledPaths.withLockedValue { $0 }.contains(EtcdKV.txn.path) }
        var fast = Etcdserverpb_TxnRequest()
        fast.failure = [Etcdserverpb_RequestOp()]
        _ = try await client.unary(EtcdKV.txn, fast, options: RPCCallOptions(timeout: .seconds(5)))
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func aLaterCallWithAnEarlierDeadlineIsEndedOnTime() async throws {
        // One timer serves every deadline of a connection: a call arriving after
        // one with a later deadline must pull the timer forward.
        let server = try await TestServer()
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        var request = Etcdserverpb_TxnRequest()
        request.failure = Array(repeating: Etcdserverpb_RequestOp(), count: 2000)  // answers after 2 s
        let slow = request
        let patient = Task {
            try await client.unary(EtcdKV.txn, slow, options: RPCCallOptions(timeout: .seconds(30)))
        }
        try await Task.sleep(for: .milliseconds(100))
        // The client does not enforce this one: only the server's timer can end it.
        let hurried = RPCCallOptions(timeout: nil, metadata: ["grpc-timeout": "200m"])
        await #expect(throws: RPCStatus(.deadlineExceeded, "context deadline exceeded")) {
            _ = try await client.unary(EtcdKV.txn, slow, options: hurried)
        }
        #expect(server.cancelledPaths.withLockedValue { $0 }.contains(EtcdKV.txn.path))
        _ = try await patient.value
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func oversizedRequestIsRefusedAndTheConnectionStaysUp() async throws {
        var configuration = RPCServerConfiguration()
        configuration.requestBytesMax = 1024
        let server = try await TestServer(configuration: configuration)
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        var small = Etcdserverpb_PutRequest()
        small.key = Data("k".utf8)
        let before = try await client.unary(EtcdKV.put, small)
        var big = small
        big.value = Data(repeating: 0, count: 5000)
        await #expect(
            throws: RPCStatus(.resourceExhausted, "grpc: received message larger than max (5006 vs. 1024)")
        ) {
            _ = try await client.unary(EtcdKV.put, big)
        }
        let after = try await client.unary(EtcdKV.put, small)
        #expect(before.header.memberID == after.header.memberID, "same client port: same connection")
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func aThousandConcurrentBidirectionalStreamsOnOneConnection() async throws {
        let server = try await TestServer()
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"], connectionsPerEndpoint: 1)
        let connection = client.connection()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 1...1000 {
                group.addTask {
                    let responses = NIOLockedValueBox<[Int64]>([])
                    let status: RPCStatus = try await withCheckedThrowingContinuation { continuation in
                        let stream = connection.openStream(
                            EtcdWatch.watch,
                            onResponse: { response in
                                responses.withLockedValue { $0.append(response.watchID) }
                            },
                            onClose: { status in continuation.resume(returning: status) })
                        var request = Etcdserverpb_WatchRequest()
                        request.createRequest.key = Data(repeating: 1, count: index)
                        stream.send(request)
                        stream.send(request)
                        stream.finish()
                    }
                    #expect(status == .ok)
                    #expect(responses.withLockedValue { $0 } == [Int64(index), Int64(index)])
                }
            }
            try await group.waitForAll()
        }
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func clientCancelReachesTheServerHandler() async throws {
        let server = try await TestServer()
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        let firstResponse = NIOLockedValueBox(false)
        let closed = NIOLockedValueBox<RPCStatus?>(nil)
        let stream = client.connection().openStream(
            EtcdWatch.watch, onResponse: { _ in firstResponse.withLockedValue { $0 = true } },
            onClose: { status in closed.withLockedValue { $0 = status } })
        stream.send(Etcdserverpb_WatchRequest())
        try await eventually { firstResponse.withLockedValue { $0 } }
        stream.cancel()
        try await eventually { closed.withLockedValue { $0 } == RPCStatus(.cancelled, "context canceled") }
        try await eventually { server.cancelledPaths.withLockedValue { $0 }.contains(EtcdWatch.watch.path) }
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func slowReaderBoundsTheServersBufferAndStillGetsEveryByte() async throws {
        var serverConfiguration = RPCServerConfiguration()
        serverConfiguration.streamBufferedBytesHigh = 256 << 10
        serverConfiguration.streamBufferedBytesLow = 64 << 10
        let server = try await TestServer(configuration: serverConfiguration)
        var clientConfiguration = RPCClientConfiguration()
        clientConfiguration.streamWindowBytes = 65_535
        clientConfiguration.connectionWindowBytes = 65_535
        let client = try RPCClient(
            endpoints: ["127.0.0.1:\(server.port)"], configuration: clientConfiguration)
        let received = NIOLockedValueBox(0)
        let status: RPCStatus = try await withCheckedThrowingContinuation { continuation in
            let stream = client.connection().openStream(
                EtcdMaintenance.snapshot,
                onResponse: { chunk in
                    received.withLockedValue { $0 += chunk.blob.count }
                    usleep(2_000)  // a slow consumer on the client's event loop
                },
                onClose: { continuation.resume(returning: $0) })
            stream.send(Etcdserverpb_SnapshotRequest())
            stream.finish()
        }
        #expect(status == .ok)
        #expect(received.withLockedValue { $0 } == ChunkStream.chunks * ChunkStream.chunkBytes)
        // One chunk may overshoot the high watermark; never more.
        #expect(ChunkStream.maxUnwritten.withLockedValue { $0 } <= (256 << 10) + ChunkStream.chunkBytes + 64)
        #expect(
            ChunkStream.maxUnwritten.withLockedValue { $0 } >= 256 << 10,
            "the reader was slow enough to matter")
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func gracefulShutdownFinishesRunningCallsAndRefusesNewOnes() async throws {
        let server = try await TestServer()
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        var slow = Etcdserverpb_TxnRequest()
        slow.failure = Array(repeating: Etcdserverpb_RequestOp(), count: 300)  // answers after 300 ms
        let running = client.connection().unaryFuture(EtcdKV.txn, slow)
        try await Task.sleep(for: .milliseconds(50))
        await server.server.shutdown()
        _ = try await running.get()
        await #expect(throws: RPCStatus.self) {
            _ = try await client.unary(EtcdKV.put, Etcdserverpb_PutRequest())
        }
        await client.shutdown()
    }

    @Test func clientReconnectsWhenTheServerComesBack() async throws {
        let port = TestPorts.allocate()
        var server: TestServer? = try await TestServer(port: port)
        var configuration = RPCClientConfiguration()
        configuration.backoffInitial = .milliseconds(20)
        configuration.backoffMax = .milliseconds(100)
        let client = try RPCClient(endpoints: ["127.0.0.1:\(port)"], configuration: configuration)
        var request = Etcdserverpb_PutRequest()
        request.key = Data("k".utf8)
        _ = try await client.unary(EtcdKV.put, request)
        await server?.server.shutdown()
        server = nil
        await #expect(throws: RPCStatus.self) { _ = try await client.unary(EtcdKV.put, request) }
        server = try await TestServer(port: port)
        try await eventually { (try? await client.unary(EtcdKV.put, request)) != nil }
        await client.shutdown()
        await server?.server.shutdown()
    }
}

extension ServerClientTests {
    @Test func partialRequestBytesAreBoundedPerConnection() async throws {
        var configuration = RPCServerConfiguration()
        configuration.connectionPartialRequestBytesMax = 100_000
        let server = try await TestServer(configuration: configuration)
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        var request = Etcdserverpb_PutRequest()
        request.value = Data(repeating: 1, count: 300_000)  // arrives in many DATA frames
        await #expect(
            throws: RPCStatus(
                .resourceExhausted, "cairn: too many partially received request bytes on this connection")
        ) {
            _ = try await client.unary(EtcdKV.put, request)
        }
        request.value = Data(repeating: 1, count: 50_000)
        #expect(try await client.unary(EtcdKV.put, request).header.revision == 50_000)
        await client.shutdown()
        await server.server.shutdown()
    }

    @Test func waitForReadyCallsOutlastFailedConnectionAttempts() async throws {
        let port = TestPorts.allocate()
        var configuration = RPCClientConfiguration()
        configuration.backoffInitial = .milliseconds(20)
        configuration.backoffMax = .milliseconds(50)
        let client = try RPCClient(endpoints: ["127.0.0.1:\(port)"], configuration: configuration)
        var request = Etcdserverpb_PutRequest()
        request.value = Data(repeating: 1, count: 7)
        let waiting = client.connection().unaryFuture(
            EtcdKV.put, request, options: RPCCallOptions(timeout: .seconds(20), waitForReady: true))
        await #expect(throws: RPCStatus.self) {
            _ = try await client.unary(EtcdKV.put, request)  // fails fast: nothing listens yet
        }
        try await Task.sleep(for: .milliseconds(200))  // several failed connection attempts
        let server = try await TestServer(port: port)
        #expect(try await waiting.get().header.revision == 7)
        await client.shutdown()
        await server.server.shutdown()
    }
}

/// Polls `condition` until it holds, for at most `seconds` (a bound, not a timing assertion).
func eventually(seconds: Double = 10, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw TestFailure("condition not met within \(seconds)s")
}
