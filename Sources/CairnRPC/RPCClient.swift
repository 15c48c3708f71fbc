import CairnAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A pool of reconnecting connections to one or more endpoints.
///
/// Calls go round-robin over the connections that are up; when none is, over
/// all of them (so a call waits on, or fails fast from, a reconnecting one).
public final class RPCClient: Sendable {
    public let connections: [RPCConnection]
    private let next = NIOLockedValueBox(0)
    private let group: (any EventLoopGroup)?

    /// - Parameters:
    ///   - endpoints: `host:port` strings.
    ///   - connectionsPerEndpoint: parallel HTTP/2 connections to each endpoint.
    ///   - group: event loops for the connections; by default a private group
    ///     of one thread per core, shut down with the client.
    public init(
        endpoints: [String], connectionsPerEndpoint: Int = 1, configuration: RPCClientConfiguration = .init(),
        group: (any EventLoopGroup)? = nil
    ) throws {
        let eventLoops: any EventLoopGroup =
            group ?? MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        var connections: [RPCConnection] = []
        for endpoint in endpoints {
            let (host, port) = try Self.parse(endpoint)
            for _ in 0..<max(1, connectionsPerEndpoint) {
                connections.append(
                    RPCConnection(
                        host: host, port: port, eventLoop: eventLoops.next(), configuration: configuration))
            }
        }
        precondition(!connections.isEmpty, "RPCClient needs at least one endpoint")
        self.connections = connections
        self.group = group == nil ? eventLoops : nil
    }

    /// The connection the next call should use.
    public func connection() -> RPCConnection {
        let start = self.next.withLockedValue { value in
            defer { value &+= 1 }
            return value
        }
        for offset in 0..<self.connections.count {
            let candidate = self.connections[(start &+ offset) % self.connections.count]
            if candidate.isReady { return candidate }
        }
        return self.connections[start % self.connections.count]
    }

    public func unary<Request, Response>(
        _ method: MethodDescriptor<Request, Response>, _ request: Request, options: RPCCallOptions = .init()
    ) async throws -> Response {
        try await self.connection().unary(method, request, options: options)
    }

    public func shutdown() async {
        for connection in self.connections { connection.shutdown() }
        try? await self.group?.shutdownGracefully()
    }

    /// Parses `host:port`, `[v6]:port` or a URL such as `http://host:port`.
    static func parse(_ endpoint: String) throws -> (String, Int) {
        var text = Substring(endpoint)
        if let scheme = text.range(of: "://") { text = text[scheme.upperBound...] }
        if text.hasSuffix("/") { text = text.dropLast() }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65_535).contains(port)
        else {
            throw RPCStatus(.invalidArgument, "endpoint \(endpoint) is not host:port")
        }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return (String(host), port)
    }
}
