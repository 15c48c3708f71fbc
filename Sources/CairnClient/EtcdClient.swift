import CairnAPI
import CairnRPC
import Foundation
import NIOCore
import NIOHPACK

/// Settings of an `EtcdClient`.
public struct EtcdClientConfiguration: Sendable {
    /// Parallel HTTP/2 connections to each endpoint; unary calls spread over
    /// them, and each has its own shared watch stream.
    public var connectionsPerEndpoint = 1
    /// How long a unary call may take unless the call says otherwise; `nil`
    /// waits forever (not advised: a lost leader would hang the caller).
    /// A Swift `Duration` rather than NIO's `TimeAmount`, so callers need not
    /// import NIO.
    public var callTimeout: Duration? = .seconds(10)
    /// etcd auth token sent as `token` metadata on every call, if set.
    public var token: String?
    /// Responses one watch may hold for a consumer that has not taken them;
    /// past this the watch fails with `WatchError.consumerTooSlow`.
    public var watchBufferedResponsesMax = 1_024
    /// Connection limits and timings of the underlying RPC layer.
    public var rpc = RPCClientConfiguration()
    /// TLS to every endpoint. When `nil` and an endpoint is `https://`, TLS
    /// with the system CAs is used, as etcd's clients do.
    public var tls: EtcdClientTLS?

    public init() {}
}

/// An async/await client of the etcd v3 API.
///
/// Named after the protocol, not after Cairn: it speaks etcd's wire API, so it
/// works against a Cairn cluster and against a real etcd alike (tests run it
/// against etcd to pin behaviour). It is a `Sendable` class because it owns
/// shared resources: the connection pool and, per connection, one watch
/// stream that all watches made over that connection share (as etcd's
/// clientv3 does), so a thousand watches cost one HTTP/2 stream, not a thousand.
///
/// Calls throw the server's `RPCStatus` unchanged; see `EtcdServerError` for
/// matching common ones. Call `shutdown()` when done.
public final class EtcdClient: Sendable {
    /// The connection pool; usable directly for calls this type does not wrap.
    public let rpc: RPCClient
    public let configuration: EtcdClientConfiguration
    /// One watch multiplexer per pool connection, in the pool's order.
    let watchMultiplexers: [WatchMultiplexer]

    /// Connects (lazily, reconnecting by itself) to `endpoints`, each
    /// `host:port`, `[v6]:port` or a URL such as `http://127.0.0.1:2379`.
    ///
    /// - Parameter group: event loops to use; by default a private group that
    ///   `shutdown()` stops.
    /// - Throws: `RPCStatus(.invalidArgument)` for a malformed endpoint, or
    ///   when `endpoints` is empty; `TLSError` for unusable TLS files.
    public init(
        endpoints: [String], configuration: EtcdClientConfiguration = .init(),
        group: (any EventLoopGroup)? = nil
    ) throws {
        guard !endpoints.isEmpty else {
            throw RPCStatus(.invalidArgument, "etcdclient: no available endpoints")
        }
        var rpcConfiguration = configuration.rpc
        if let tls = configuration.tls ?? (endpoints.contains(where: EtcdClientTLS.isSecure) ? .init() : nil)
        {
            rpcConfiguration.tls = try tls.rpcTLS()
        }
        self.rpc = try RPCClient(
            endpoints: endpoints, connectionsPerEndpoint: configuration.connectionsPerEndpoint,
            configuration: rpcConfiguration, group: group)
        self.configuration = configuration
        let metadata = Self.metadata(token: configuration.token)
        self.watchMultiplexers = self.rpc.connections.map { connection in
            WatchMultiplexer(
                connection: connection, metadata: metadata,
                bufferedResponsesMax: configuration.watchBufferedResponsesMax)
        }
    }

    /// Connects to endpoints given as URLs (`http://host:port`).
    public convenience init(
        urls: [URL], configuration: EtcdClientConfiguration = .init(), group: (any EventLoopGroup)? = nil
    ) throws {
        try self.init(endpoints: urls.map(\.absoluteString), configuration: configuration, group: group)
    }

    /// Ends every watch and keep-alive with `streamClosed` and closes the connections.
    public func shutdown() async {
        for multiplexer in self.watchMultiplexers { multiplexer.close() }
        await self.rpc.shutdown()
    }

    // MARK: Call plumbing

    static func metadata(token: String?) -> HPACKHeaders {
        guard let token else { return [:] }
        return ["token": token]
    }

    /// Options for one unary call: the default timeout and the auth token.
    func callOptions() -> RPCCallOptions {
        RPCCallOptions(
            timeout: self.callTimeout, metadata: Self.metadata(token: self.configuration.token))
    }

    /// `configuration.callTimeout` in NIO's unit.
    var callTimeout: TimeAmount? {
        self.configuration.callTimeout.map { duration in
            let (seconds, attoseconds) = duration.components
            return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        }
    }

    /// Options for a long-lived stream: no deadline, the auth token.
    func streamOptions() -> RPCCallOptions {
        RPCCallOptions(timeout: nil, metadata: Self.metadata(token: self.configuration.token))
    }

    func unary<Request, Response>(
        _ method: MethodDescriptor<Request, Response>, _ request: Request
    ) async throws -> Response {
        try await self.rpc.unary(method, request, options: self.callOptions())
    }

    /// The watch multiplexer of the connection the pool picks next.
    func nextWatchMultiplexer() -> WatchMultiplexer {
        let connection = self.rpc.connection()
        return self.watchMultiplexers.first { $0.connection === connection } ?? self.watchMultiplexers[0]
    }
}
