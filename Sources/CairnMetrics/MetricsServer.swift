import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A `--listen-metrics-urls` value that is not `http://HOST:PORT`.
public struct MetricsURLError: Error, Equatable, CustomStringConvertible {
    public var description: String
}

/// The plain HTTP/1.1 listener of `--listen-metrics-urls` (etcd's flag):
/// Prometheus scrapes and health probes, answered by a `MetricsResponder`.
///
/// Lifecycle: `start` binds and returns a running server; `shutdown`
/// closes the listener and every open connection, once.
///
/// Properties:
/// 1. A request is answered only after its body ended; bodies are
///    discarded as they arrive (nothing is buffered), so a client cannot
///    grow this server's memory beyond NIO's header limits.
/// 2. Pipelined requests are answered one at a time in order (NIO's
///    server pipeline handler holds the next until the answer is written).
public final class MetricsServer: Sendable {
    public let localAddress: SocketAddress
    private let channel: any Channel
    private let connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>

    private init(channel: any Channel, connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>) {
        self.channel = channel
        self.localAddress = channel.localAddress!
        self.connections = connections
    }

    /// `http://host:port` URLs, comma-separated, to (host, port); etcd also
    /// accepts https there, which needs TLS this listener does not have.
    public static func parse(urls: String) throws(MetricsURLError) -> [(host: String, port: Int)] {
        var parsed: [(host: String, port: Int)] = []
        for url in urls.split(separator: ",") {
            guard url.hasPrefix("http://") else {
                throw MetricsURLError(
                    description: "metrics URLs must be http://HOST:PORT (no TLS yet), got \(url)")
            }
            let address = url.dropFirst("http://".count).split(separator: "/", maxSplits: 1).first ?? ""
            guard let colon = address.lastIndex(of: ":"),
                let port = Int(address[address.index(after: colon)...]),
                (0...65_535).contains(port)
            else {
                throw MetricsURLError(description: "metrics URL must be http://HOST:PORT, got \(url)")
            }
            var host = String(address[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            parsed.append((host, port))
        }
        return parsed
    }

    /// Binds `host:port` (port 0 picks a free one) and serves `responder`.
    public static func start(
        host: String, port: Int, responder: MetricsResponder, group: any EventLoopGroup
    ) async throws -> MetricsServer {
        let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let key = ObjectIdentifier(channel)
                connections.withLockedValue { $0[key] = channel }
                channel.closeFuture.whenComplete { _ in
                    connections.withLockedValue { _ = $0.removeValue(forKey: key) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(responder: responder))
                }
            }
            .bind(host: host, port: port).get()
        return MetricsServer(channel: channel, connections: connections)
    }

    /// Stops listening and closes every connection.
    public func shutdown() async {
        try? await self.channel.close()
        let open = self.connections.withLockedValue { Array($0.values) }
        for connection in open { try? await connection.close() }
    }
}

/// One connection's requests: each answered once its end arrived.
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: MetricsResponder
    private var head: HTTPRequestHead?

    init(responder: MetricsResponder) {
        self.responder = responder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break  // property 1: bodies are not read
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let responder = self.responder
            let promise = context.eventLoop.makePromise(of: MetricsAnswer.self)
            promise.completeWithTask { await responder.answer(method: head.method.rawValue, uri: head.uri) }
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { answer in
                Self.write(answer, for: head, context: loopBound.value)
            }
        }
    }

    private static func write(
        _ answer: MetricsAnswer, for request: HTTPRequestHead, context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders(answer.headers)
        headers.add(name: "Content-Length", value: String(answer.body.count))
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: request.version, status: HTTPResponseStatus(statusCode: answer.status), headers: headers)
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: answer.body.count)
            buffer.writeBytes(answer.body)
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
