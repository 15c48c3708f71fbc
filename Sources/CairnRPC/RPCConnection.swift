import CairnAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import SwiftProtobuf

/// Client limits and timings.
public struct RPCClientConfiguration: Sendable {
    public var connectTimeout: TimeAmount = .seconds(5)
    /// Reconnect delays grow from `backoffInitial` by `backoffMultiplier` up to
    /// `backoffMax`, with ±20% jitter so restarted clients do not stampede.
    public var backoffInitial: TimeAmount = .milliseconds(100)
    public var backoffMax: TimeAmount = .seconds(5)
    public var backoffMultiplier = 1.6
    /// Largest response message accepted (etcd clients allow 2 GiB; a bound
    /// this size still fits any snapshot chunk or range etcd sends).
    public var responseBytesMax = 512 << 20
    public var streamWindowBytes = 1 << 20
    public var connectionWindowBytes = 8 << 20
    /// Calls queued while a connection is being established; more fail with UNAVAILABLE.
    public var pendingCallsMax = 10_000
    /// TLS to the server (ALPN h2, SNI, server certificate check, client
    /// certificate); `nil` speaks plaintext HTTP/2. Must be a client-role
    /// `RPCTLS`; the server name defaults to the host dialled.
    public var tls: RPCTLS?

    public init() {}
}

/// Per-call settings.
public struct RPCCallOptions: Sendable {
    /// How long the caller waits; sent to the server as `grpc-timeout`.
    public var timeout: TimeAmount?
    /// Extra request metadata (lowercase names), e.g. etcd's `token`.
    public var metadata: HPACKHeaders
    /// Queue the call while the connection is down instead of failing fast
    /// with UNAVAILABLE (gRPC's wait-for-ready).
    public var waitForReady: Bool

    public init(timeout: TimeAmount? = nil, metadata: HPACKHeaders = [:], waitForReady: Bool = false) {
        self.timeout = timeout
        self.metadata = metadata
        self.waitForReady = waitForReady
    }
}

/// One logical connection to one endpoint that reconnects by itself.
///
/// All its state lives on one event loop; its methods may be called from any
/// thread and hop there. Calls made while it connects are queued (bounded);
/// while it backs off after a failure they fail fast with UNAVAILABLE unless
/// they ask to wait for ready.
public final class RPCConnection: Sendable {
    /// Where the connection is in its life; mutated only on `eventLoop`.
    enum State {
        case connecting
        /// TCP is up; waiting for the server's HTTP/2 SETTINGS.
        case handshaking(any Channel)
        case ready(ClientConnectionHandler, any Channel)
        case backoff(attempt: Int)
        case shutdown
    }

    /// The connection's mutable core, confined to the event loop.
    final class Core {
        var state: State = .connecting
        var failures = 0
        /// Calls waiting for the connection, with whether they wait for ready.
        var pending: [(call: ClientCall, waitForReady: Bool)] = []
    }

    public let host: String
    public let port: Int
    public let eventLoop: any EventLoop
    let configuration: RPCClientConfiguration
    private let core: NIOLoopBoundBox<Core>
    private let readyFlag = NIOLockedValueBox(false)

    public init(
        host: String, port: Int, eventLoop: any EventLoop, configuration: RPCClientConfiguration = .init()
    ) {
        precondition(
            configuration.tls.map { $0.role == .client } ?? true, "a client needs a client-role RPCTLS")
        self.host = host
        self.port = port
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.core = NIOLoopBoundBox.makeBoxSendingValue(Core(), eventLoop: eventLoop)
        self.onLoop { core in self.connect(core) }
    }

    /// Whether the connection is established right now (a hint for pools).
    public var isReady: Bool { self.readyFlag.withLockedValue { $0 } }

    // MARK: Calls

    /// Makes a unary call; the future completes on this connection's event loop.
    public func unaryFuture<Request, Response>(
        _ method: MethodDescriptor<Request, Response>, _ request: Request, options: RPCCallOptions = .init()
    ) -> EventLoopFuture<Response> {
        let promise = self.eventLoop.makePromise(of: Response.self)
        let payload: ByteBuffer
        do {
            payload = try Self.frame(request)
        } catch {
            promise.fail(RPCStatus(.internal, "grpc: error while marshaling: \(error)"))
            return promise.futureResult
        }
        self.onLoop { core in
            var response: Response?
            let call = self.makeCall(
                method.path, options: options,
                onMessage: { bytes in
                    guard response == nil else {
                        return RPCStatus(.internal, "grpc: more than one response message for a unary call")
                    }
                    do {
                        response = try Response(serializedBytes: bytes.readableBytesSpan)
                        return nil
                    } catch {
                        return RPCStatus(
                            .internal, "grpc: failed to unmarshal the received message: \(error)")
                    }
                },
                onClose: { status in
                    if status.code != .ok {
                        promise.fail(status)
                    } else if let response {
                        promise.succeed(response)
                    } else {
                        promise.fail(RPCStatus(.internal, "grpc: the server sent no response message"))
                    }
                })
            call.send(payload, endStream: true)
            self.startOrQueue(call, core: core, waitForReady: options.waitForReady)
        }
        return promise.futureResult
    }

    /// Makes a unary call and waits for its answer.
    public func unary<Request, Response>(
        _ method: MethodDescriptor<Request, Response>, _ request: Request, options: RPCCallOptions = .init()
    ) async throws -> Response {
        try await self.unaryFuture(method, request, options: options).get()
    }

    /// Opens a streaming call. `onResponse` and then exactly one `onClose` run
    /// on this connection's event loop.
    public func openStream<Request, Response>(
        _ method: MethodDescriptor<Request, Response>, options: RPCCallOptions = .init(),
        onResponse: @escaping @Sendable (Response) -> Void,
        onClose: @escaping @Sendable (RPCStatus) -> Void
    ) -> RPCClientStream<Request> {
        let stream = RPCClientStream<Request>(connection: self)
        self.onLoop { core in
            let call = self.makeCall(
                method.path, options: options,
                onMessage: { bytes in
                    do {
                        onResponse(try Response(serializedBytes: bytes.readableBytesSpan))
                        return nil
                    } catch {
                        return RPCStatus(
                            .internal, "grpc: failed to unmarshal the received message: \(error)")
                    }
                }, onClose: onClose)
            stream.bind(call)
            self.startOrQueue(call, core: core, waitForReady: options.waitForReady)
        }
        return stream
    }

    /// Closes the connection; open and queued calls end with UNAVAILABLE.
    public func shutdown() {
        self.onLoop { core in
            let previous = core.state
            core.state = .shutdown
            self.readyFlag.withLockedValue { $0 = false }
            self.failPending(
                core, RPCStatus(.unavailable, "the client connection is shut down"), evenWaitForReady: true)
            switch previous {
            case .handshaking(let channel), .ready(_, let channel): channel.close(promise: nil)
            default: break
            }
        }
    }

    // MARK: Internals

    func onLoop(_ body: @escaping @Sendable (Core) -> Void) {
        if self.eventLoop.inEventLoop {
            body(self.core.value)
        } else {
            self.eventLoop.execute { body(self.core.value) }
        }
    }

    static func frame<Message: SwiftProtobuf.Message>(_ message: Message) throws -> ByteBuffer {
        try message.grpcFramed()
    }

    private func makeCall(
        _ path: String, options: RPCCallOptions, onMessage: @escaping (ByteBuffer) -> RPCStatus?,
        onClose: @escaping (RPCStatus) -> Void
    ) -> ClientCall {
        ClientCall(
            path: path, metadata: options.metadata, deadline: options.timeout.map { .now() + $0 },
            responseBytesMax: self.configuration.responseBytesMax, eventLoop: self.eventLoop,
            onMessage: onMessage, onClose: onClose)
    }

    private func startOrQueue(_ call: ClientCall, core: Core, waitForReady: Bool) {
        guard !call.isClosed else { return }
        switch core.state {
        case .ready(let handler, _):
            handler.start(call)
        case .connecting, .handshaking:
            self.queue(call, core: core, waitForReady: waitForReady)
        case .backoff:
            if waitForReady {
                self.queue(call, core: core, waitForReady: true)
            } else {
                call.connectionFailed(
                    RPCStatus(
                        .unavailable, "connection to \(self.host):\(self.port) is unavailable; retrying"))
            }
        case .shutdown:
            call.connectionFailed(RPCStatus(.unavailable, "the client connection is shut down"))
        }
    }

    private func queue(_ call: ClientCall, core: Core, waitForReady: Bool) {
        guard core.pending.count < self.configuration.pendingCallsMax else {
            call.connectionFailed(RPCStatus(.unavailable, "too many calls waiting for a connection"))
            return
        }
        core.pending.append((call, waitForReady))
    }

    /// Fails the calls waiting for a connection after a failed attempt; those
    /// that wait for ready stay queued for the next attempt unless the
    /// connection is shutting down.
    private func failPending(_ core: Core, _ status: RPCStatus, evenWaitForReady: Bool = false) {
        let pending = core.pending
        core.pending = pending.filter { $0.waitForReady && !evenWaitForReady && !$0.call.isClosed }
        for entry in pending where !entry.waitForReady || evenWaitForReady {
            entry.call.connectionFailed(status)
        }
    }

    private func connect(_ core: Core) {
        guard case .shutdown = core.state else {
            core.state = .connecting
            let configuration = self.configuration
            let authority = "\(self.host):\(self.port)"
            let host = self.host
            ClientBootstrap(group: self.eventLoop)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try configuration.tls?.addHandlers(
                            to: channel.pipeline.syncOperations, serverName: host)
                        try Self.configure(
                            channel.pipeline.syncOperations, authority: authority,
                            configuration: configuration)
                    }
                }
                .connect(host: self.host, port: self.port)
                .whenComplete { result in self.onLoop { core in self.connected(result, core: core) } }
            return
        }
    }

    /// Adds the HTTP/2 and gRPC client handlers; the TLS layer calls this after its own.
    public static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations, authority: String,
        configuration: RPCClientConfiguration
    ) throws {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .initialWindowSize, value: configuration.streamWindowBytes),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16_384),
        ]
        // grpc-go servers (etcd) send a BDP PING with most responses; NIO's
        // default of 200 control frames per 30 s would make this client
        // GOAWAY its own server after ~200 calls. The server is trusted.
        connection.controlFrameRateLimit.maximumCount = Int(Int32.max)
        try pipeline.addHandler(NIOHTTP2Handler(mode: .client, connectionConfiguration: connection))
        try pipeline.addHandler(
            ClientConnectionHandler(
                authority: authority, scheme: configuration.tls == nil ? "http" : "https",
                configuration: configuration))
    }

    private func connected(_ result: Result<any Channel, any Error>, core: Core) {
        switch result {
        case .success(let channel):
            guard case .connecting = core.state,
                let handler = try? channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self)
            else {
                channel.close(promise: nil)
                return
            }
            core.state = .handshaking(channel)
            let channelID = ObjectIdentifier(channel)
            // Kept to read why TLS failed (if it did) once the channel closed.
            let tlsEvents = (try? channel.pipeline.syncOperations.handler(type: RPCTLSEventHandler.self))
                .map { NIOLoopBound($0, eventLoop: self.eventLoop) }
            handler.onReady = { self.handshook(handler, channel, core: self.core.value) }
            handler.onRetired = {
                self.onLoop { core in
                    if case .ready(_, let current) = core.state, ObjectIdentifier(current) == channelID {
                        self.connect(core)
                    }
                }
            }
            channel.closeFuture.whenComplete { _ in
                self.onLoop { core in
                    switch core.state {
                    case .handshaking(let current) where ObjectIdentifier(current) == channelID:
                        let reason =
                            tlsEvents?.value.failure ?? "connection closed during the HTTP/2 handshake"
                        self.failPending(core, RPCStatus(.unavailable, "connection error: \(reason)"))
                        self.scheduleReconnect(core)
                    case .ready(_, let current) where ObjectIdentifier(current) == channelID:
                        self.scheduleReconnect(core)
                    default:
                        break
                    }
                }
            }
        case .failure(let error):
            guard case .connecting = core.state else { return }
            self.failPending(core, RPCStatus(.unavailable, "connection error: \(error)"))
            self.scheduleReconnect(core)
        }
    }

    /// The server's SETTINGS arrived: start every call that waited.
    private func handshook(_ handler: ClientConnectionHandler, _ channel: any Channel, core: Core) {
        guard case .handshaking(let current) = core.state, current === channel else { return }
        core.state = .ready(handler, channel)
        core.failures = 0
        self.readyFlag.withLockedValue { $0 = true }
        let pending = core.pending
        core.pending = []
        for entry in pending where !entry.call.isClosed { handler.start(entry.call) }
    }

    private func scheduleReconnect(_ core: Core) {
        if case .shutdown = core.state { return }
        self.readyFlag.withLockedValue { $0 = false }
        core.failures += 1
        core.state = .backoff(attempt: core.failures)
        let base =
            Double(self.configuration.backoffInitial.nanoseconds)
            * pow(self.configuration.backoffMultiplier, Double(core.failures - 1))
        let capped = min(base, Double(self.configuration.backoffMax.nanoseconds))
        let delay = TimeAmount.nanoseconds(Int64(capped * Double.random(in: 0.8...1.2)))
        self.eventLoop.scheduleTask(in: delay) {
            self.onLoop { core in
                if case .backoff = core.state { self.connect(core) }
            }
        }
    }
}

/// The client's handle on a streaming call; safe to use from any thread.
public final class RPCClientStream<Request: SwiftProtobuf.Message>: Sendable {
    private let connection: RPCConnection
    private let call: NIOLoopBoundBox<ClientCall?>

    init(connection: RPCConnection) {
        self.connection = connection
        self.call = NIOLoopBoundBox.makeEmptyBox(eventLoop: connection.eventLoop)
    }

    func bind(_ call: ClientCall) {
        self.call.value = call
    }

    /// Sends one request message (ignored once the call has ended).
    public func send(_ request: Request) {
        guard let payload = try? RPCConnection.frame(request) else {
            self.cancel()
            return
        }
        self.connection.onLoop { _ in self.call.value?.send(payload, endStream: false) }
    }

    /// Half-closes: tells the server no more requests follow.
    public func finish() {
        self.connection.onLoop { _ in self.call.value?.send(nil, endStream: true) }
    }

    /// Abandons the call; its `onClose` runs with CANCELLED.
    public func cancel() {
        self.connection.onLoop { _ in self.call.value?.cancel(RPCStatus(.cancelled, "context canceled")) }
    }
}
