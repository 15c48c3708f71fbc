import NIOCore

/// The TLS protocol versions Cairn accepts as a floor. Older versions are
/// never offered: etcd's `--tls-min-version` allows only TLS1.2 and TLS1.3.
public enum TLSVersion: Sendable, Hashable, CustomStringConvertible {
    case tls12
    case tls13

    public var description: String {
        switch self {
        case .tls12: return "TLS1.2"
        case .tls13: return "TLS1.3"
        }
    }
}

/// Which end of the handshake a `TLSContext` serves; it decides the OpenSSL
/// method, whether a certificate is mandatory and how ALPN is negotiated.
public enum TLSRole: Sendable, Hashable {
    case server
    case client
}

/// Everything needed to build a `TLSContext`. Files are read once, when the
/// context is built, so a new context (built from the same configuration)
/// picks up rotated certificates for new connections.
///
/// Properties:
/// 1. A server always has `certificateChainFile` and `privateKeyFile`.
/// 2. `requireClientCertificate` needs `trustedCAFile` (the CA the clients'
///    certificates must chain to).
/// 3. A client always verifies the server's chain (against `trustedCAFile`,
///    or the system store when it is `nil`).
public struct TLSConfiguration: Sendable {
    /// PEM file with the leaf certificate first, then intermediates.
    public var certificateChainFile: String?
    /// PEM file with the private key of the leaf certificate.
    public var privateKeyFile: String?
    /// PEM bundle of CAs trusted to sign the peer's certificate.
    public var trustedCAFile: String?
    /// Server only: ask for a client certificate, verify it against
    /// `trustedCAFile` and refuse the handshake without one (etcd's
    /// `--client-cert-auth`).
    public var requireClientCertificate: Bool
    /// PEM file of certificate revocation lists from the CA in
    /// `trustedCAFile`; a peer certificate listed there is refused (etcd's
    /// `--client-crl-file`). Read when the context is built.
    public var crlFile: String?
    /// The lowest protocol version negotiated.
    public var minimumVersion: TLSVersion
    /// OpenSSL cipher list for TLS 1.2 (e.g. "ECDHE-ECDSA-AES128-GCM-SHA256");
    /// `nil` keeps the system policy's default.
    public var cipherList: String?
    /// OpenSSL cipher suites for TLS 1.3 (e.g. "TLS_AES_128_GCM_SHA256");
    /// `nil` keeps the default.
    public var cipherSuites: String?
    /// ALPN protocols in preference order. gRPC needs "h2".
    public var alpnProtocols: [String]
    /// Refuse a peer with which none of `alpnProtocols` was agreed (grpc-go
    /// clients such as etcdctl insist on h2; a server that does not check
    /// would hand HTTP/1 bytes to the HTTP/2 parser). Ignored when
    /// `alpnProtocols` is empty.
    public var requireALPN: Bool
    /// Client only: the name sent as SNI and, when `verifyServerName` is set,
    /// checked against the server certificate's SANs (DNS name or IP
    /// address). A `TLSHandler` may override it per connection.
    public var serverName: String?
    /// Client only: check that the server certificate is issued for
    /// `serverName` (a host name or an IP address literal).
    public var verifyServerName: Bool
    /// How long a connection may take to finish its handshake before it is
    /// refused; it bounds the resources a silent or slow peer can hold.
    public var handshakeTimeout: TimeAmount
    /// Bytes of application writes held while the handshake runs; a write
    /// past this bound fails with `TLSError` and the connection stays up.
    public var pendingWriteBytesMax: Int
    /// Ciphertext bytes held waiting for the rest of a record; a peer that
    /// exceeds it (far beyond one 16 KiB record) is disconnected.
    public var ciphertextBufferedBytesMax: Int

    /// A configuration for `role` with Cairn's defaults: TLS 1.2 floor, ALPN
    /// "h2" required, 10 s handshake timeout.
    public init(
        certificateChainFile: String? = nil,
        privateKeyFile: String? = nil,
        trustedCAFile: String? = nil,
        requireClientCertificate: Bool = false,
        crlFile: String? = nil,
        minimumVersion: TLSVersion = .tls12,
        cipherList: String? = nil,
        cipherSuites: String? = nil,
        alpnProtocols: [String] = ["h2"],
        requireALPN: Bool = true,
        serverName: String? = nil,
        verifyServerName: Bool = true,
        handshakeTimeout: TimeAmount = .seconds(10),
        pendingWriteBytesMax: Int = 8 * 1024 * 1024,
        ciphertextBufferedBytesMax: Int = 1024 * 1024
    ) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.trustedCAFile = trustedCAFile
        self.requireClientCertificate = requireClientCertificate
        self.crlFile = crlFile
        self.minimumVersion = minimumVersion
        self.cipherList = cipherList
        self.cipherSuites = cipherSuites
        self.alpnProtocols = alpnProtocols
        self.requireALPN = requireALPN
        self.serverName = serverName
        self.verifyServerName = verifyServerName
        self.handshakeTimeout = handshakeTimeout
        self.pendingWriteBytesMax = pendingWriteBytesMax
        self.ciphertextBufferedBytesMax = ciphertextBufferedBytesMax
    }
}

/// An operating error of the TLS layer, with a message an operator can act
/// on: which file or setting, what OpenSSL said.
public struct TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, for callers that branch on it.
    public enum Kind: Sendable, Hashable {
        case invalidConfiguration
        case certificateChain
        case privateKey
        case trustedCA
        case revocationList
        case cipherSettings
        case alpn
        case connectionSetup
        case pendingWritesExceeded
        case ciphertextBufferExceeded
        case closed
        case recordLayer
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
