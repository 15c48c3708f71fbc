import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP2
import NIOPosix

/// Limits and timings of an RPC server, with etcd's defaults where etcd has one.
public struct RPCServerConfiguration: Sendable {
    /// Largest request message: etcd's `--max-request-bytes` (1.5 MiB) plus
    /// the 512 KiB of gRPC overhead etcd allows on top.
    public var requestBytesMax = 1_572_864 + 524_288
    /// Request bytes one connection may hold in partial messages across all its
    /// streams (each stream alone is bounded by `requestBytesMax`).
    public var connectionPartialRequestBytesMax = 64 << 20
    /// HTTP/2 streams (calls) one connection may have open at once.
    public var concurrentStreamsMax = 10_000
    /// Flow-control credit per stream and per connection.
    public var streamWindowBytes = 1 << 20
    public var connectionWindowBytes = 8 << 20
    /// Response bytes a streaming call may have waiting for a slow reader:
    /// above `High` the stream reports not writable, below `Low` writable
    /// again, and past `Max` it is reset.
    public var streamBufferedBytesHigh = 1 << 20
    public var streamBufferedBytesLow = 256 << 10
    public var streamBufferedBytesMax = 16 << 20
    /// Ping an idle client this often (etcd: `--grpc-keepalive-interval`, 2h)…
    public var keepaliveInterval: TimeAmount? = .hours(2)
    /// …and drop it if the ping is unanswered this long (`--grpc-keepalive-timeout`).
    public var keepaliveTimeout: TimeAmount = .seconds(20)
    /// How long a graceful shutdown waits for running calls before closing.
    public var shutdownGracePeriod: TimeAmount = .seconds(10)
    /// Stream resets a client may cause per 30 s before the connection is
    /// dropped (HTTP/2 "rapid reset" protection), high enough for clients that
    /// cancel many calls legitimately.
    public var streamResetsPer30SecondsMax = 10_000
    /// PING, SETTINGS and other control frames a client may send per 30 s
    /// before it is sent GOAWAY (a flood guard). gRPC clients send a BDP
    /// PING with most data frames they receive (a busy watch: thousands),
    /// so NIO's default of 200 would cut etcdctl off.
    public var controlFramesPer30SecondsMax = 1_000_000
    /// TLS in front of HTTP/2 (ALPN h2, client certificates, identities);
    /// `nil` serves plaintext HTTP/2. Must be a server-role `RPCTLS`.
    public var tls: RPCTLS?
    /// Called once per call that reached a registered method, when it ends:
    /// with its `:path` and the status it ended with (`.cancelled` when
    /// the client reset it or went away). Runs on the connection's event
    /// loop, so it must be cheap; metrics (`grpc_server_handled_total`)
    /// hang here without this layer knowing about them. nil: no hook.
    public var callFinished: (@Sendable (_ path: String, _ code: RPCStatus.Code) -> Void)?

    public init() {}
}

/// A gRPC server over HTTP/2, on plain TCP or behind TLS
/// (`RPCServerConfiguration.tls`).
///
/// Lifecycle: `start` binds and returns a running server; `shutdown` stops
/// accepting, sends GOAWAY on every connection, lets running calls finish
/// within the grace period and then closes.
public final class RPCServer: Sendable {
    /// Asks a connection handler to drain (sent as a user outbound event).
    struct GracefulShutdownEvent: Sendable {}

    public let localAddress: SocketAddress
    private let channel: any Channel
    private let group: MultiThreadedEventLoopGroup
    private let ownsGroup: Bool
    private let connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>

    private init(
        channel: any Channel, group: MultiThreadedEventLoopGroup, ownsGroup: Bool,
        connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>
    ) {
        self.channel = channel
        self.localAddress = channel.localAddress!
        self.group = group
        self.ownsGroup = ownsGroup
        self.connections = connections
    }

    /// Binds `host:port` and serves `router` until `shutdown`.
    /// - Parameter group: event loops to serve on; by default one per core,
    ///   owned and shut down by the server.
    public static func start(
        host: String, port: Int, router: RPCServiceRouter, configuration: RPCServerConfiguration = .init(),
        group: MultiThreadedEventLoopGroup? = nil
    ) async throws -> RPCServer {
        precondition(
            configuration.tls.map { $0.role == .server } ?? true, "a server needs a server-role RPCTLS")
        let eventLoops = group ?? MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
        let bootstrap = ServerBootstrap(group: eventLoops)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                let key = ObjectIdentifier(channel)
                connections.withLockedValue { $0[key] = channel }
                channel.closeFuture.whenComplete { _ in
                    _ = connections.withLockedValue { $0.removeValue(forKey: key) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try configuration.tls?.addHandlers(to: channel.pipeline.syncOperations)
                    try Self.configure(
                        channel.pipeline.syncOperations, router: router, configuration: configuration)
                }
            }
        do {
            let channel = try await bootstrap.bind(host: host, port: port).get()
            return RPCServer(
                channel: channel, group: eventLoops, ownsGroup: group == nil, connections: connections)
        } catch {
            if group == nil { try? await eventLoops.shutdownGracefully() }
            throw error
        }
    }

    /// Adds the HTTP/2 and gRPC handlers to a connection's pipeline. The TLS
    /// layer calls this after its own handler so both transports share it.
    public static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations, router: RPCServiceRouter,
        configuration: RPCServerConfiguration
    ) throws {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: configuration.concurrentStreamsMax),
            HTTP2Setting(parameter: .initialWindowSize, value: configuration.streamWindowBytes),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16_384),
        ]
        connection.controlFrameRateLimit.maximumCount = configuration.controlFramesPer30SecondsMax
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.streamResetFrameRateLimit.maximumCount = configuration.streamResetsPer30SecondsMax
        stream.streamErrorRateLimit.maximumCount = configuration.streamResetsPer30SecondsMax
        try pipeline.addHandler(
            NIOHTTP2Handler(mode: .server, connectionConfiguration: connection, streamConfiguration: stream))
        try pipeline.addHandler(ServerConnectionHandler(router: router, configuration: configuration))
    }

    /// Stops accepting, drains every connection (GOAWAY, then running calls
    /// finish or the grace period ends), and releases the event loops.
    public func shutdown() async {
        try? await self.channel.close()
        let open = self.connections.withLockedValue { Array($0.values) }
        for connection in open {
            connection.triggerUserOutboundEvent(GracefulShutdownEvent(), promise: nil)
        }
        for connection in open {
            try? await connection.closeFuture.get()
        }
        if self.ownsGroup {
            try? await self.group.shutdownGracefully()
        }
    }
}
