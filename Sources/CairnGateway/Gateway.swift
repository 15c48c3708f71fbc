import CairnAPI
import CairnRPC
import CairnTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Settings of a gateway (`cairn gateway`), named after `etcd grpc-proxy start`.
public struct GatewayConfiguration: Sendable {
    /// Where applications connect (`--listen-addr`).
    public var listenHost = "127.0.0.1"
    public var listenPort = 23_790
    /// The client-facing TLS: the gateway's certificate and the tenants' CA;
    /// client certificates are required.
    public var serverTLS: RPCTLS
    /// Seed endpoints of the cluster (`--endpoints`).
    public var endpoints: [String]
    /// Connections to members, with the gateway's own client certificate.
    public var upstream = RPCClientConfiguration()
    /// The tenants file (`--tenants`), re-read on `reload()`.
    public var tenantsPath: String
    /// Limits of the client-facing RPC server.
    public var server = RPCServerConfiguration()
    /// Event loop threads.
    public var threads = System.coreCount
    /// Whether the members answer watch progress requests in step with
    /// their events (Cairn members, etcd ≥ 3.4.25). When not, linearizable
    /// reads are never served from the cache.
    public var upstreamProgressIsSynced = true
    /// Where the gateway counts (`/metrics`).
    public var metrics = GatewayMetrics()

    public init(serverTLS: RPCTLS, endpoints: [String], tenantsPath: String) {
        self.serverTLS = serverTLS
        self.endpoints = endpoints
        self.tenantsPath = tenantsPath
    }
}

/// The gateway: the sidecar applications talk to (DESIGN.md). It
/// authenticates each client by its certificate, confines it to its tenant's
/// namespace on every service, coalesces watches and lease keep-alives,
/// routes writes to the leader and serves hot reads from a watch-fed cache.
///
/// It is a client of the cluster and imports no member module, so it works
/// in front of plain etcd too (members there ignore the on-behalf-of header).
public final class Gateway: Sendable {
    /// The metadata naming the tenant an upstream call is made for. The same
    /// name as the members' `MemberAuthCredentials.onBehalfOfHeader`; the
    /// gateway cannot import that module, and the wire is the contract.
    public static let onBehalfOfHeader = "cairn-on-behalf-of"

    let configuration: GatewayConfiguration
    let group: MultiThreadedEventLoopGroup
    let upstream: UpstreamCluster
    let tenants: NIOLockedValueBox<TenantTable>
    let keepAlives: KeepAliveCoalescer
    let watches: WatchCoalescer
    let readCache: GatewayReadCache
    public let metrics: GatewayMetrics
    let server: NIOLockedValueBox<RPCServer?> = NIOLockedValueBox(nil)

    /// Reads the tenants file and connects to the cluster; `start()` serves.
    public init(configuration: GatewayConfiguration) throws {
        self.configuration = configuration
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.threads))
        self.metrics = configuration.metrics
        let table = try TenantTable(
            file: TenantsFile.load(path: configuration.tenantsPath), previous: nil,
            metrics: configuration.metrics)
        self.tenants = NIOLockedValueBox(table)
        do {
            self.upstream = try UpstreamCluster(
                endpoints: configuration.endpoints, configuration: configuration.upstream, group: self.group)
        } catch {
            try? self.group.syncShutdownGracefully()
            throw error
        }
        self.keepAlives = KeepAliveCoalescer(upstream: self.upstream)
        let upstream = self.upstream
        var watchConfiguration = WatchCoalescerConfiguration()
        watchConfiguration.upstreamProgressIsSynced = configuration.upstreamProgressIsSynced
        self.watches = WatchCoalescer(eventLoop: self.group.next(), configuration: watchConfiguration) {
            upstream.connection(for: .any)
        }
        self.readCache = GatewayReadCache(
            upstream: self.upstream, watches: self.watches,
            progressIsSynced: configuration.upstreamProgressIsSynced, loops: Array(self.group.makeIterator()))
    }

    /// Binds the listen address and serves until `shutdown()`.
    public func start() async throws -> SocketAddress {
        self.upstream.start()
        self.readCache.configure(self.tenants.withLockedValue { $0.directory.tenants })
        var serverConfiguration = self.configuration.server
        serverConfiguration.tls = self.configuration.serverTLS
        let handled = self.metrics.handled
        serverConfiguration.callFinished = { path, code in handled.handled(path: path, code: code.rawValue) }
        let server = try await RPCServer.start(
            host: self.configuration.listenHost, port: self.configuration.listenPort, router: self.router(),
            configuration: serverConfiguration, group: self.group)
        self.server.withLockedValue { $0 = server }
        return server.localAddress
    }

    /// Re-reads the tenants file and the certificates (SIGHUP). Connections
    /// stay up; new connections use the new certificates, and every call
    /// from now on sees the new tenant policies. A file that does not load
    /// leaves everything as it was and throws why.
    public func reload() throws {
        let file = try TenantsFile.load(path: self.configuration.tenantsPath)
        try self.configuration.serverTLS.contexts.reload()
        try self.configuration.upstream.tls?.contexts.reload()
        try self.tenants.withLockedValue { table in
            table = try TenantTable(file: file, previous: table, metrics: self.metrics)
        }
        self.readCache.configure(file.tenants)
    }

    /// Stops serving (GOAWAY, then running calls finish) and disconnects.
    public func shutdown() async {
        // Watches first: their streams never end by themselves, and the
        // server's drain waits for every open call.
        self.watches.shutdown()
        if let server = self.server.withLockedValue({ $0 }) { await server.shutdown() }
        self.upstream.shutdown()
        try? await self.group.shutdownGracefully()
    }

    /// Nanoseconds on the monotonic clock, for rate buckets.
    static func nowNanoseconds() -> UInt64 {
        UInt64(NIODeadline.now().uptimeNanoseconds)
    }

    /// The tenant of a call's connection, charged one request; refuses
    /// unknown identities and tenants over their rate.
    func admit(_ context: RPCContext) throws -> TenantRuntime {
        let runtime = try self.tenant(of: context)
        try runtime.admitRequest(nowNanoseconds: Self.nowNanoseconds())
        return runtime
    }

    /// The tenant of a call's connection, not charged. The connection's
    /// certificate never changes, so its tenant is looked up once per
    /// connection and tenants table (a reload starts a new table) and kept
    /// in the connection's session: a call costs one lock, not a lookup.
    func tenant(of context: RPCContext) throws -> TenantRuntime {
        guard let peer = context.peer else {
            throw RPCStatus(.permissionDenied, "gateway: a client certificate is required")
        }
        let session = GatewaySession.of(context)
        return try self.tenants.withLockedValue { table in
            if let known = session.tenant, known.generation == table.generation { return known.runtime }
            let runtime = try table.runtime(for: peer)
            session.tenant = (table.generation, runtime)
            return runtime
        }
    }
}

/// The tenants in force: who is who, and each tenant's runtime state.
struct TenantTable: Sendable {
    let directory: TenantDirectory
    let runtimes: [String: TenantRuntime]
    /// One more than the previous table's: a connection's remembered
    /// tenant holds only for the table it was looked up in.
    let generation: Int

    /// Builds the table of `file`, keeping the runtime of tenants that
    /// `previous` already had.
    init(file: TenantsFile, previous: TenantTable?, metrics: GatewayMetrics) throws {
        let now = Gateway.nowNanoseconds()
        self.directory = TenantDirectory(file: file)
        self.generation = (previous?.generation ?? 0) + 1
        var runtimes: [String: TenantRuntime] = [:]
        for tenant in file.tenants {
            if let kept = previous?.runtimes[tenant.name] {
                kept.update(tenant, nowNanoseconds: now)
                runtimes[tenant.name] = kept
            } else {
                runtimes[tenant.name] = TenantRuntime(
                    tenant: tenant, counters: metrics.counters(tenant: tenant.name), nowNanoseconds: now)
            }
        }
        self.runtimes = runtimes
    }

    func runtime(for peer: PeerIdentity) throws -> TenantRuntime {
        guard let tenant = try self.directory.tenant(for: peer), let runtime = self.runtimes[tenant.name]
        else {
            let name = peer.uris.first ?? peer.commonName ?? peer.dnsNames.first ?? "(none)"
            throw RPCStatus(.permissionDenied, "gateway: certificate identity \(name) is not a tenant")
        }
        return runtime
    }
}
