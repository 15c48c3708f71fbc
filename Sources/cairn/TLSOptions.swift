import ArgumentParser
import CairnPeer
import CairnRPC
import CairnTLS
import NIOCore

/// etcd's transport security flags, with etcd's names and error texts. The
/// client flags secure `https://` client URLs (`serverConfigurations`); the
/// peer flags secure peer connections (`peerTransportInitializer(_:)` is the
/// peer transport's channel initializer: client or server TLS per side).
/// `contexts(clientURLs:)` builds every context once; SIGHUP reloads them
/// (`MemberTLSContexts.reload`).
///
/// Properties:
/// 1. Every TLS setting is checked in `validate()` (versions, cipher names)
///    or when its context is built (files), before anything listens.
/// 2. A plaintext URL ignores the TLS files, as etcd does.
/// 3. `--cipher-suites` restricts TLS 1.2 only; TLS 1.3 suites are not
///    configurable, as in etcd (Go), so TLS1.3 with cipher suites is refused.
/// 4. As in etcd, a trusted CA file alone already makes client certificates
///    mandatory (verified against it); `--client-cert-auth` additionally
///    makes the certificate CN the user name when auth is enabled (the auth
///    layer reads `clientCertAuth` for that).
struct TLSOptions: ParsableArguments {
    @Option(help: "Path to the client server TLS cert file.")
    var certFile: String?

    @Option(help: "Path to the client server TLS key file.")
    var keyFile: String?

    @Option(help: "Path to the client server TLS trusted CA cert file.")
    var trustedCaFile: String?

    @Flag(help: "Enable client cert authentication.")
    var clientCertAuth = false

    @Option(help: "Path to the client certificate revocation list file.")
    var clientCrlFile: String?

    @Option(help: "Minimum TLS version supported by cairn. Possible values: TLS1.2, TLS1.3.")
    var tlsMinVersion = "TLS1.2"

    @Option(help: "Comma-separated list of supported TLS 1.2 cipher suites between client/server and peers.")
    var cipherSuites = ""

    @Option(help: "Path to the peer server TLS cert file.")
    var peerCertFile: String?

    @Option(help: "Path to the peer server TLS key file.")
    var peerKeyFile: String?

    @Option(help: "Path to the peer server TLS trusted CA file.")
    var peerTrustedCaFile: String?

    @Flag(help: "Enable peer client cert authentication.")
    var peerClientCertAuth = false

    @Option(help: "Path to the peer certificate revocation list file.")
    var peerCrlFile: String?

    func validate() throws {
        let version = try self.minimumVersion()
        let ciphers = try self.cipherList()
        if version == .tls13 && ciphers != nil {
            throw ValidationError("cipher suites cannot be configured when only TLS1.3 is enabled")
        }
    }

    /// `--tls-min-version` as a `TLSVersion`.
    func minimumVersion() throws -> TLSVersion {
        try Self.minimumVersion(self.tlsMinVersion)
    }

    /// etcd's `--tls-min-version` values, for members and gateways alike.
    static func minimumVersion(_ text: String) throws -> TLSVersion {
        switch text {
        case "TLS1.2": return .tls12
        case "TLS1.3": return .tls13
        default:
            throw ValidationError("unexpected TLS version \"\(text)\" (must be one of: TLS1.2, TLS1.3)")
        }
    }

    /// `--cipher-suites` (Go's IANA-style names, as etcd takes them) as an
    /// OpenSSL cipher list; `nil` keeps the system policy's default.
    func cipherList() throws -> String? {
        guard !self.cipherSuites.isEmpty else { return nil }
        let names = try self.cipherSuites.split(separator: ",", omittingEmptySubsequences: false).map {
            name in
            guard let openSSLName = Self.openSSLCipherNames[String(name)] else {
                throw ValidationError("unexpected TLS cipher suite \"\(name)\"")
            }
            return openSSLName
        }
        return names.joined(separator: ":")
    }

    // MARK: contexts

    /// Every TLS context the member needs, built once (each reads and checks
    /// its files now, so a broken certificate fails at startup): the client
    /// URLs' server context and the context for calls to other members'
    /// client URLs when one of `clientURLs` is `https://` (members of one
    /// cluster share the scheme), and the peer server and client contexts
    /// when a peer certificate is given.
    func contexts(clientURLs: String) throws -> MemberTLSContexts {
        let client = try self.clientTLS(clientURLs: clientURLs)
        return MemberTLSContexts(
            client: client, peerServer: try self.peerServerTLS(), peerClient: try self.peerClientTLS(),
            forwarding: client == nil ? nil : try self.forwardingClientTLS())
    }

    /// TLS for this member's calls to other members' `https://` client URLs
    /// (a follower forwards lease keep-alives and membership changes to its
    /// leader): `--cert-file` as the client certificate, the other member's
    /// certificate checked against `--trusted-ca-file` and the URL's host.
    /// nil without a client certificate.
    func forwardingClientTLS() throws -> RPCTLS? {
        guard self.certFile != nil || self.keyFile != nil else { return nil }
        let configuration = TLSConfiguration(
            certificateChainFile: self.certFile, privateKeyFile: self.keyFile,
            trustedCAFile: self.trustedCaFile, minimumVersion: try self.minimumVersion(),
            cipherList: try self.cipherList())
        return try Self.rpcTLS(configuration, role: .client) { peer, reason in
            logLine(
                "TLS handshake with the leader's client URL \(peer.map { "\($0)" } ?? "") failed: \(reason)")
        }
    }

    // MARK: client URLs

    /// The client URLs' server TLS, or nil when every one of `clientURLs`
    /// (comma-separated) is plaintext; refuses `https://` URLs without a
    /// certificate, with etcd's text.
    func clientTLS(clientURLs: String) throws -> RPCTLS? {
        let urls = clientURLs.split(separator: ",").map(String.init)
        let secure = urls.filter(Self.isSecure)
        if let first = secure.first, self.certFile == nil && self.keyFile == nil {
            throw ValidationError(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url \(first) with HTTPS scheme"
            )
        }
        if secure.isEmpty && (self.certFile != nil || self.keyFile != nil || self.clientCertAuth) {
            logLine("client URLs are all http://: ignoring --cert-file, --key-file and --client-cert-auth")
        }
        return secure.isEmpty ? nil : try self.clientServerTLS()
    }

    /// The RPC server configuration of each of `clientURLs` (comma-separated),
    /// in order: `base`, plus `tls` (from `clientTLS(clientURLs:)`, shared by
    /// every server so one reload rotates them all) for the `https://` ones.
    func serverConfigurations(base: RPCServerConfiguration, clientURLs: String, tls: RPCTLS?)
        -> [RPCServerConfiguration]
    {
        clientURLs.split(separator: ",").map(String.init).map { url in
            var configuration = base
            configuration.tls = Self.isSecure(url) ? tls : nil
            return configuration
        }
    }

    /// TLS for the client URLs' servers.
    func clientServerTLS(log: @escaping @Sendable (String) -> Void = { logLine($0) }) throws -> RPCTLS {
        let configuration = TLSConfiguration(
            certificateChainFile: self.certFile, privateKeyFile: self.keyFile,
            trustedCAFile: self.trustedCaFile,
            requireClientCertificate: self.clientCertAuth || self.trustedCaFile != nil,
            crlFile: self.clientCrlFile,
            minimumVersion: try self.minimumVersion(), cipherList: try self.cipherList())
        return try Self.serverTLS(configuration, kind: "client", log: log)
    }

    // MARK: peer URLs

    /// Checks that `https://` peer URLs have the peer certificate and key,
    /// with etcd's error text.
    func validate(peerURLs: [String]) throws {
        for url in peerURLs where Self.isSecure(url) && self.peerCertFile == nil && self.peerKeyFile == nil {
            let address = url.dropFirst("https://".count).split(separator: "/").first ?? ""
            throw ValidationError(
                "cannot listen on TLS for \(address): KeyFile and CertFile are not presented")
        }
    }

    /// The peer transport's channel-initializer hook (`PeerChannelInitializer`
    /// adapts to it): installs TLS in front of a peer channel, as a client
    /// checking the dialled member's certificate against the host of its peer
    /// URL (`dialledHost`), or as a server when the channel was accepted
    /// (`dialledHost == nil`). `nil` when no peer certificate is configured
    /// (plaintext peers). Each channel takes the contexts' current
    /// certificate, so a reload applies to peer connections made after it.
    static func peerChannelInitializer(_ contexts: MemberTLSContexts) -> (
        @Sendable (_ channel: any Channel, _ dialledHost: String?) throws -> Void
    )? {
        guard let server = contexts.peerServer, let client = contexts.peerClient else { return nil }
        return { channel, dialledHost in
            let pipeline = channel.pipeline.syncOperations
            if let dialledHost {
                try client.addHandlers(to: pipeline, serverName: dialledHost)
            } else {
                try server.addHandlers(to: pipeline)
            }
        }
    }

    /// `peerChannelInitializer(_:)` in the peer transport's shape, for
    /// `MemberConfiguration.peerChannelInitializer`: a dialled channel
    /// verifies the member's certificate against the host of its peer URL.
    static func peerTransportInitializer(_ contexts: MemberTLSContexts) -> PeerChannelInitializer? {
        guard let install = Self.peerChannelInitializer(contexts) else { return nil }
        return { channel, side in
            switch side {
            case .dialling(_, let url): try install(channel, url.host)
            case .accepted: try install(channel, nil)
            }
        }
    }

    /// ALPN of peer connections: not gRPC, so a gRPC client dialling the
    /// peer port (or a member dialling a client port) fails the handshake.
    static let peerALPN = ["cairn-peer"]

    /// TLS for the peer listener: the peer certificate, and with
    /// `--peer-client-cert-auth` peers must present a certificate from
    /// `--peer-trusted-ca-file`. `nil` when no peer certificate is given.
    func peerServerTLS(log: @escaping @Sendable (String) -> Void = { logLine($0) }) throws -> RPCTLS? {
        guard self.peerCertFile != nil || self.peerKeyFile != nil else { return nil }
        let configuration = TLSConfiguration(
            certificateChainFile: self.peerCertFile, privateKeyFile: self.peerKeyFile,
            trustedCAFile: self.peerTrustedCaFile,
            requireClientCertificate: self.peerClientCertAuth || self.peerTrustedCaFile != nil,
            crlFile: self.peerCrlFile, minimumVersion: try self.minimumVersion(),
            cipherList: try self.cipherList(),
            alpnProtocols: Self.peerALPN)
        return try Self.serverTLS(configuration, kind: "peer", log: log)
    }

    /// TLS for dialling other members: the peer certificate as the client
    /// certificate, the other member's certificate checked against
    /// `--peer-trusted-ca-file` and the host of its peer URL (the transport
    /// passes that host as `serverName` to `addHandlers`). `nil` when no
    /// peer certificate is given.
    func peerClientTLS() throws -> RPCTLS? {
        guard self.peerCertFile != nil || self.peerKeyFile != nil else { return nil }
        let configuration = TLSConfiguration(
            certificateChainFile: self.peerCertFile, privateKeyFile: self.peerKeyFile,
            trustedCAFile: self.peerTrustedCaFile, crlFile: self.peerCrlFile,
            minimumVersion: try self.minimumVersion(), cipherList: try self.cipherList(),
            alpnProtocols: Self.peerALPN)
        return try Self.rpcTLS(configuration, role: .client) { peer, reason in
            logLine("peer TLS handshake with \(peer.map { "\($0)" } ?? "unknown") failed: \(reason)")
        }
    }

    // MARK: helpers

    static func isSecure(_ url: String) -> Bool {
        url.lowercased().hasPrefix("https://")
    }

    /// A server-role `RPCTLS` whose refused handshakes are logged as etcd
    /// logs them ("rejected connection from …").
    static func serverTLS(
        _ configuration: TLSConfiguration, kind: String, log: @escaping @Sendable (String) -> Void
    ) throws -> RPCTLS {
        try rpcTLS(configuration, role: .server) { peer, reason in
            let address = peer.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
            log("rejected \(kind) connection from \"\(address)\" (TLS handshake failed: \(reason))")
        }
    }

    /// Builds the context, turning the TLS layer's error (file and OpenSSL
    /// reason) into a startup error.
    static func rpcTLS(
        _ configuration: TLSConfiguration, role: TLSRole,
        log: (@Sendable (SocketAddress?, String) -> Void)? = nil
    ) throws -> RPCTLS {
        do {
            return try RPCTLS(configuration: configuration, role: role, onHandshakeFailure: log)
        } catch {
            throw ValidationError("TLS: \(error.message)")
        }
    }

    /// Go's (etcd's) cipher suite names to OpenSSL's, TLS 1.2 and below.
    static let openSSLCipherNames: [String: String] = [
        "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    ]
}
