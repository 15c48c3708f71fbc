import ArgumentParser
import CairnMetrics
import CairnRPC
import CairnServer
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// `cairn member`: one member serving the etcd v3 API, with etcd's flag
/// names and defaults.
struct MemberCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "member",
        abstract: "Run a Cairn member (a Raft voter) serving etcd's v3 gRPC API."
    )

    @Option(help: "Human-readable name for this member.")
    var name = "default"

    @Option(help: "Path to the data directory (default: <name>.cairn).")
    var dataDir: String?

    @Option(help: "Comma-separated URLs to listen on for client traffic.")
    var listenClientUrls = "http://127.0.0.1:2379"

    @Option(help: "Comma-separated client URLs to advertise (default: the listen URLs).")
    var advertiseClientUrls: String?

    @Option(help: "Largest client request in bytes.")
    var maxRequestBytes = 1_572_864

    @Option(help: "Most operations in one txn request.")
    var maxTxnOps = 128

    @Option(help: "Backend size above which writes are refused (0 = 2 GiB).")
    var quotaBackendBytes = 0

    @Option(help: "Auto-compaction mode: 'periodic' (retention is a duration) or 'revision' (a count).")
    var autoCompactionMode = "periodic"

    @Option(
        help:
            "Auto-compaction retention: hours or a duration like 30m (periodic), revisions (revision); 0 = off."
    )
    var autoCompactionRetention = "0"

    @Option(help: "Applied entries between two snapshots of the state (then old WAL segments are released).")
    var snapshotCount = Int(Member.snapshotEntriesIntervalDefault)

    @Option(help: "Event loop threads for client connections (default: one per core).")
    var threads = System.coreCount

    @Option(help: "Comma-separated http URLs to serve /metrics, /health, /livez and /readyz on.")
    var listenMetricsUrls = ""

    @OptionGroup var tls: TLSOptions

    @OptionGroup var auth: AuthOptions

    @OptionGroup var cluster: ClusterOptions

    @OptionGroup var logOptions: LogOptions

    func validate() throws {
        guard self.maxRequestBytes > 0, self.maxRequestBytes <= Member.requestBytesLimit else {
            throw ValidationError("--max-request-bytes must be between 1 and \(Member.requestBytesLimit)")
        }
        guard self.snapshotCount > 0 else { throw ValidationError("--snapshot-count must be positive") }
        guard self.maxTxnOps > 0 else { throw ValidationError("--max-txn-ops must be positive") }
        guard self.quotaBackendBytes >= 0 else { throw ValidationError("--quota-backend-bytes must be >= 0") }
        _ = try Self.parse(urls: self.listenClientUrls)
        try MetricsListeners.validate(self.listenMetricsUrls)
        do {
            _ = try AutoCompaction.parse(
                mode: self.autoCompactionMode, retention: self.autoCompactionRetention)
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// `http://host:port` and `https://host:port` URLs to (host, port).
    static func parse(urls: String) throws -> [(host: String, port: Int)] {
        try urls.split(separator: ",").map { url in
            guard let scheme = ["http://", "https://"].first(where: { url.hasPrefix($0) }) else {
                throw ValidationError("only http:// and https:// client URLs are supported, got \(url)")
            }
            let address = url.dropFirst(scheme.count).split(separator: "/", maxSplits: 1).first ?? ""
            guard let colon = address.lastIndex(of: ":"),
                let port = Int(address[address.index(after: colon)...])
            else {
                throw ValidationError("client URL must be http://HOST:PORT, got \(url)")
            }
            return (String(address[..<colon]), port)
        }
    }

    /// Shuts the servers down (no new connections, GOAWAY, running calls
    /// finish) while ending watch streams, which never finish by themselves:
    /// clients re-open a watch until they see the GOAWAY, so streams are
    /// ended repeatedly until the servers have drained.
    static func drain(_ servers: [RPCServer], member: Member) async {
        let drained = NIOLockedValueBox(false)
        let endedStreams = NIOLockedValueBox(0)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for server in servers { await server.shutdown() }
                drained.withLockedValue { $0 = true }
            }
            group.addTask {
                while !drained.withLockedValue({ $0 }) {
                    let ended = await member.endWatchStreams()
                    endedStreams.withLockedValue { $0 += ended }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
        }
        logLine("ended \(endedStreams.withLockedValue { $0 }) open watch streams")
    }

    func run() async throws {
        self.logOptions.apply()
        StructuredLog.addProcessMetadata(["name": "\(self.name)"])
        let listen = try Self.parse(urls: self.listenClientUrls)
        let advertised = (self.advertiseClientUrls ?? self.listenClientUrls).split(separator: ",").map(
            String.init)
        var memberConfiguration = MemberConfiguration(
            name: self.name, dataDirectory: self.dataDir ?? "\(self.name).cairn", clientURLs: advertised)
        memberConfiguration.requestBytesMax = self.maxRequestBytes
        memberConfiguration.txnOperationsMax = self.maxTxnOps
        memberConfiguration.quotaBackendBytes = self.quotaBackendBytes
        do {
            memberConfiguration.autoCompaction = try AutoCompaction.parse(
                mode: self.autoCompactionMode, retention: self.autoCompactionRetention)
        } catch {
            throw ValidationError(error.message)
        }
        memberConfiguration.snapshotEntriesInterval = UInt64(self.snapshotCount)
        memberConfiguration.cluster = try self.cluster.bootstrap(name: self.name)
        try self.tls.validate(
            peerURLs: memberConfiguration.cluster.listenPeerURLs.map(\.description)
                + memberConfiguration.cluster.advertisedPeerURLs)
        let tlsContexts = try self.tls.contexts(clientURLs: self.listenClientUrls)
        onReloadSignal { tlsContexts.reload { logLine($0) } }
        memberConfiguration.peerChannelInitializer = TLSOptions.peerTransportInitializer(tlsContexts)
        memberConfiguration.clientForwardingTLS = tlsContexts.forwarding
        let memberLogger = StructuredLog.logger(component: "member")
        let member = try Member(configuration: memberConfiguration) { level, line, metadata in
            memberLogger.log(level: level, "\(line)", metadata: metadata)
        }
        StructuredLog.addProcessMetadata([
            "member-id": "\(member.memberID)", "cluster-id": "\(member.clusterID)",
        ])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, self.threads))
        // Before the peers, so /readyz answers (not ready) during start-up too.
        let dataDirectory = memberConfiguration.dataDirectory
        let metrics = memberConfiguration.metrics
        let metricsServers = try await MetricsListeners.start(
            self.listenMetricsUrls,
            responder: MetricsResponder(
                registry: metrics.registry, checks: member.healthChecks(),
                collect: { metrics.refreshDatabaseSize(dataDirectory: dataDirectory) }),
            group: group, log: { logLine($0) })
        // Peers first, then clients once this member is published (as etcd).
        try await member.startPeers(group: group)
        await member.waitUntilReady()
        var rpcConfiguration = RPCServerConfiguration()
        let handled = GRPCServerMetrics(
            registry: memberConfiguration.metrics.registry, methods: GRPCServerMetrics.etcdMethods)
        rpcConfiguration.callFinished = { path, code in handled.handled(path: path, code: code.rawValue) }
        // etcd lets gRPC accept 512 KiB of overhead over --max-request-bytes.
        rpcConfiguration.requestBytesMax = self.maxRequestBytes + 524_288
        let authConfiguration = self.auth.configuration(clientCertAuth: self.tls.clientCertAuth)
        let services = MemberServices(member: member, auth: MemberAuth(configuration: authConfiguration))
        let router = services.router()
        var servers: [RPCServer] = []
        let configurations = self.tls.serverConfigurations(
            base: rpcConfiguration, clientURLs: self.listenClientUrls, tls: tlsContexts.client)
        for ((host, port), configuration) in zip(listen, configurations) {
            let server = try await RPCServer.start(
                host: host, port: port, router: router, configuration: configuration, group: group)
            logLine("\(self.name) (\(member.memberID)) serving clients on \(server.localAddress)")
            servers.append(server)
        }
        // A signal, or the cluster removing this member (etcd exits then too).
        let (stopped, stop) = AsyncStream.makeStream(of: String.self)
        Task {
            await waitForTerminationSignal()
            stop.yield("a termination signal")
        }
        Task {
            await member.waitUntilRemoved()
            stop.yield("removal from the cluster")
        }
        var reason = "the end of the stop stream"
        for await first in stopped {
            reason = first
            break
        }
        logLine("shutting down after \(reason)")
        await member.handOverLeadership()
        await Self.drain(servers, member: member)
        await member.shutdown()
        for server in metricsServers { await server.shutdown() }
        try await group.shutdownGracefully()
        logLine("stopped")
    }
}

/// Logs one record through swift-log (`StructuredLogHandler`: one unbuffered
/// write per record, so a `kill -9` never loses what was logged before it).
/// `component` names the process kind (`member`, `gateway`).
func logLine(_ line: String, component: String = "member", level: Logger.Level = .info) {
    StructuredLog.logger(component: component).log(level: level, "\(line)")
}
