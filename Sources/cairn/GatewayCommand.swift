import ArgumentParser
import CairnGateway
import CairnRPC
import CairnTLS
import NIOCore
import NIOPosix

/// `cairn gateway`: the per-host sidecar in front of the cluster, with the
/// flag names of `etcd grpc-proxy start`.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run a Cairn gateway: TLS for tenants, namespaces, coalesced watches, a read cache."
    )

    @Option(help: "Address (host:port) applications connect to.")
    var listenAddr = "127.0.0.1:23790"

    @Option(help: "Comma-separated member client URLs to start from (more are learned from MemberList).")
    var endpoints = "https://127.0.0.1:2379"

    @Option(help: "The gateway's TLS certificate for applications.")
    var certFile: String?

    @Option(help: "The key of --cert-file.")
    var keyFile: String?

    @Option(help: "CA bundle that signs tenants' client certificates (client certificates are required).")
    var trustedCaFile: String?

    @Option(help: "Certificate revocation list for tenants' certificates.")
    var clientCrlFile: String?

    @Option(help: "The gateway's client certificate towards the members (their --gateway-identities).")
    var cert: String?

    @Option(help: "The key of --cert.")
    var key: String?

    @Option(help: "CA bundle that signs the members' certificates.")
    var cacert: String?

    @Option(help: "The tenants file (YAML); re-read on SIGHUP.")
    var tenants: String

    @Option(help: "Minimum TLS version: TLS1.2 or TLS1.3.")
    var tlsMinVersion = "TLS1.2"

    @Option(help: "Event loop threads (default: one per core).")
    var threads = System.coreCount

    @Option(help: "Comma-separated http URLs serving /metrics, /health, /livez and /readyz.")
    var listenMetricsUrls = ""

    @Flag(
        help: ArgumentHelp(
            "The members answer watch progress requests out of step with events (etcd before 3.4.25).",
            discussion: "Linearizable reads are then never served from the read cache."))
    var upstreamProgressUnsynced = false

    @OptionGroup var logOptions: LogOptions

    func validate() throws {
        _ = try self.listenAddress()
        _ = try self.minimumVersion()
        try MetricsListeners.validate(self.listenMetricsUrls)
        guard self.certFile != nil, self.keyFile != nil else {
            throw ValidationError("--cert-file and --key-file are required: the gateway serves only TLS")
        }
        guard self.trustedCaFile != nil else {
            throw ValidationError(
                "--trusted-ca-file is required: tenants are known by their client certificates")
        }
        guard (self.cert == nil) == (self.key == nil) else {
            throw ValidationError(
                "--cert and --key go together (the gateway's certificate towards the members)")
        }
    }

    func listenAddress() throws -> (host: String, port: Int) {
        guard let colon = self.listenAddr.lastIndex(of: ":"),
            let port = Int(self.listenAddr[self.listenAddr.index(after: colon)...]),
            (0...65_535).contains(port)
        else {
            throw ValidationError("--listen-addr must be host:port, got \(self.listenAddr)")
        }
        var host = self.listenAddr[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return (String(host), port)
    }

    func minimumVersion() throws -> TLSVersion {
        try TLSOptions.minimumVersion(self.tlsMinVersion)
    }

    func run() async throws {
        self.logOptions.apply()
        let log: @Sendable (String) -> Void = { logLine($0, component: "gateway") }
        let (host, port) = try self.listenAddress()
        let serverTLS: RPCTLS
        var upstream = RPCClientConfiguration()
        let endpoints = self.endpoints.split(separator: ",").map(String.init)
        serverTLS = try TLSOptions.serverTLS(
            TLSConfiguration(
                certificateChainFile: self.certFile, privateKeyFile: self.keyFile,
                trustedCAFile: self.trustedCaFile,
                requireClientCertificate: true, crlFile: self.clientCrlFile,
                minimumVersion: try self.minimumVersion()),
            kind: "client", log: log)
        if endpoints.contains(where: { $0.lowercased().hasPrefix("https://") }) || self.cacert != nil {
            upstream.tls = try TLSOptions.rpcTLS(
                TLSConfiguration(
                    certificateChainFile: self.cert, privateKeyFile: self.key, trustedCAFile: self.cacert,
                    minimumVersion: try self.minimumVersion()),
                role: .client)
        }
        var configuration = GatewayConfiguration(
            serverTLS: serverTLS, endpoints: endpoints, tenantsPath: self.tenants)
        configuration.listenHost = host
        configuration.listenPort = port
        configuration.upstream = upstream
        configuration.threads = self.threads
        configuration.upstreamProgressIsSynced = !self.upstreamProgressUnsynced
        let gateway: Gateway
        do {
            gateway = try Gateway(configuration: configuration)
        } catch {
            throw ValidationError("\(error)")
        }
        onReloadSignal {
            do {
                try gateway.reload()
                log("reloaded the tenants file and certificates")
            } catch {
                log("reload failed, keeping the previous tenants and certificates: \(error)")
            }
        }
        let address = try await gateway.start()
        log("serving tenants on \(address), members at \(self.endpoints)")
        let metricsGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let metricsServers = try await MetricsListeners.start(
            self.listenMetricsUrls, responder: gateway.metricsResponder(), group: metricsGroup, log: log)
        await waitForTerminationSignal()
        log("shutting down after a termination signal")
        await gateway.shutdown()
        for server in metricsServers { await server.shutdown() }
        try? await metricsGroup.shutdownGracefully()
        log("stopped")
    }
}
