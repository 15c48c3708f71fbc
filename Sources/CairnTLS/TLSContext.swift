import COpenSSL

/// A built OpenSSL `SSL_CTX`: certificates loaded, trust store and policy
/// set. Building it reads and checks every file once, so a broken
/// configuration fails at startup with a clear message instead of on the
/// first connection; after that it is immutable and shared by all
/// connections (OpenSSL allows concurrent `SSL_new` on a configured
/// context), hence `@unchecked Sendable`.
public final class TLSContext: @unchecked Sendable {
    public let configuration: TLSConfiguration
    public let role: TLSRole
    /// The owned `SSL_CTX *`; freed in `deinit`.
    let pointer: OpaquePointer
    /// Server ALPN preferences, retained for OpenSSL's selection callback
    /// for as long as the `SSL_CTX` lives.
    private let alpnPreferences: Unmanaged<ALPNPreferences>?

    /// Builds the context, or throws a `TLSError` naming the file or setting
    /// that failed and OpenSSL's reason.
    public init(configuration: TLSConfiguration, role: TLSRole) throws(TLSError) {
        ERR_clear_error()
        let method = role == .server ? TLS_server_method() : TLS_client_method()
        guard let context = SSL_CTX_new(method) else {
            throw TLSError(.connectionSetup, "cannot create an OpenSSL context: \(OpenSSLErrors.drain())")
        }
        self.configuration = configuration
        self.role = role
        self.pointer = context
        var preferences: Unmanaged<ALPNPreferences>? = nil
        if role == .server && !configuration.alpnProtocols.isEmpty {
            preferences = Unmanaged.passRetained(ALPNPreferences(configuration.alpnProtocols))
        }
        self.alpnPreferences = preferences
        try Self.applyPolicy(context, configuration, role)
        try Self.loadIdentity(context, configuration, role)
        try Self.loadTrust(context, configuration, role)
        try Self.configureALPN(context, configuration, role, preferences)
    }

    deinit {
        SSL_CTX_free(pointer)
        alpnPreferences?.release()
    }

    /// Who our own (leaf) certificate names, or nil without one: lets an
    /// operator's log show which certificate a (re)loaded context serves.
    public var certificateIdentity: TLSPeerIdentity? {
        guard let certificate = SSL_CTX_get0_certificate(pointer) else { return nil }
        return TLSPeerIdentity(certificate: certificate)
    }

    /// Protocol floor, ciphers and options that hold for every connection.
    private static func applyPolicy(
        _ context: OpaquePointer,
        _ configuration: TLSConfiguration,
        _ role: TLSRole
    ) throws(TLSError) {
        let version = configuration.minimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard cairn_SSL_CTX_set_min_proto_version(context, version) == 1 else {
            throw TLSError(
                .invalidConfiguration,
                "cannot set minimum TLS version \(configuration.minimumVersion): \(OpenSSLErrors.drain())"
            )
        }
        var options = cairn_SSL_OP_NO_RENEGOTIATION() | cairn_SSL_OP_NO_COMPRESSION()
        if role == .server { options |= cairn_SSL_OP_CIPHER_SERVER_PREFERENCE() }
        _ = cairn_SSL_CTX_set_options(context, options)
        if let cipherList = configuration.cipherList, SSL_CTX_set_cipher_list(context, cipherList) != 1 {
            throw TLSError(
                .cipherSettings,
                "cipher list '\(cipherList)' selects no usable TLS 1.2 cipher: \(OpenSSLErrors.drain())"
            )
        }
        if let suites = configuration.cipherSuites, SSL_CTX_set_ciphersuites(context, suites) != 1 {
            throw TLSError(
                .cipherSettings,
                "cipher suites '\(suites)' select no usable TLS 1.3 suite: \(OpenSSLErrors.drain())"
            )
        }
    }

    /// Loads our certificate chain and key, and checks that they match.
    private static func loadIdentity(
        _ context: OpaquePointer,
        _ configuration: TLSConfiguration,
        _ role: TLSRole
    ) throws(TLSError) {
        switch (configuration.certificateChainFile, configuration.privateKeyFile) {
        case (nil, nil):
            if role == .server {
                throw TLSError(
                    .invalidConfiguration,
                    "a TLS server needs a certificate chain file and a private key file"
                )
            }
        case (let chain?, let key?):
            guard SSL_CTX_use_certificate_chain_file(context, chain) == 1 else {
                throw TLSError(
                    .certificateChain,
                    "cannot load certificate chain file '\(chain)' (PEM, leaf first): \(OpenSSLErrors.drain())"
                )
            }
            guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
                let reason = OpenSSLErrors.drain()
                // OpenSSL already compares the key with the loaded certificate here.
                if reason.contains("key values mismatch") {
                    throw TLSError(
                        .privateKey,
                        "private key file '\(key)' does not match the certificate in '\(chain)': \(reason)"
                    )
                }
                throw TLSError(
                    .privateKey, "cannot load private key file '\(key)' (PEM, unencrypted): \(reason)")
            }
            guard SSL_CTX_check_private_key(context) == 1 else {
                throw TLSError(
                    .privateKey,
                    "private key file '\(key)' does not match the certificate in '\(chain)': "
                        + OpenSSLErrors.drain()
                )
            }
        case (.some, nil):
            throw TLSError(
                .invalidConfiguration, "a certificate chain file was given without a private key file")
        case (nil, .some):
            throw TLSError(
                .invalidConfiguration, "a private key file was given without a certificate chain file")
        }
    }

    /// Loads the CAs that verify the peer and sets the verification mode.
    private static func loadTrust(
        _ context: OpaquePointer,
        _ configuration: TLSConfiguration,
        _ role: TLSRole
    ) throws(TLSError) {
        if let caFile = configuration.trustedCAFile {
            guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
                throw TLSError(
                    .trustedCA,
                    "cannot load trusted CA file '\(caFile)' (PEM bundle): \(OpenSSLErrors.drain())"
                )
            }
        }
        if let crlFile = configuration.crlFile { try loadRevocationList(context, crlFile) }
        switch role {
        case .client:
            if configuration.trustedCAFile == nil {
                guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                    throw TLSError(.trustedCA, "cannot load the system CA store: \(OpenSSLErrors.drain())")
                }
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        case .server:
            guard configuration.requireClientCertificate else {
                SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
                return
            }
            guard let caFile = configuration.trustedCAFile else {
                throw TLSError(
                    .invalidConfiguration,
                    "requiring client certificates needs a trusted CA file to verify them against"
                )
            }
            // Tell clients which CAs we accept, so they pick the right certificate.
            if let names = SSL_load_client_CA_file(caFile) {
                SSL_CTX_set_client_CA_list(context, names)
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
    }

    /// Adds the CRLs to the trust store and checks every peer leaf
    /// certificate against them.
    private static func loadRevocationList(_ context: OpaquePointer, _ crlFile: String) throws(TLSError) {
        guard let store = SSL_CTX_get_cert_store(context),
            let lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file())
        else {
            throw TLSError(.revocationList, "cannot open the certificate store: \(OpenSSLErrors.drain())")
        }
        guard X509_load_crl_file(lookup, crlFile, X509_FILETYPE_PEM) > 0 else {
            throw TLSError(
                .revocationList,
                "cannot load certificate revocation list file '\(crlFile)' (PEM): \(OpenSSLErrors.drain())"
            )
        }
        _ = X509_STORE_set_flags(store, UInt(X509_V_FLAG_CRL_CHECK))
    }

    /// Client: offers the protocols. Server: selects by its own preference
    /// and, when ALPN is required, refuses a ClientHello without the
    /// extension (the select callback is not called at all then).
    private static func configureALPN(
        _ context: OpaquePointer,
        _ configuration: TLSConfiguration,
        _ role: TLSRole,
        _ preferences: Unmanaged<ALPNPreferences>?
    ) throws(TLSError) {
        guard !configuration.alpnProtocols.isEmpty else { return }
        guard let wire = ALPNPreferences.wireFormat(configuration.alpnProtocols) else {
            throw TLSError(
                .alpn,
                "ALPN protocol names must be 1 to 255 bytes long: \(configuration.alpnProtocols)"
            )
        }
        switch role {
        case .client:
            let status = wire.withUnsafeBufferPointer {
                SSL_CTX_set_alpn_protos(context, $0.baseAddress, UInt32($0.count))
            }
            // Unlike most of OpenSSL, 0 means success here.
            guard status == 0 else {
                throw TLSError(.alpn, "cannot set ALPN protocols: \(OpenSSLErrors.drain())")
            }
        case .server:
            SSL_CTX_set_alpn_select_cb(context, alpnSelect, preferences?.toOpaque())
            if configuration.requireALPN {
                SSL_CTX_set_client_hello_cb(context, clientHelloRequiresALPN, nil)
            }
        }
    }
}

/// The server's ALPN protocols, looked up by OpenSSL's C callback.
final class ALPNPreferences {
    let protocols: [[UInt8]]

    init(_ protocols: [String]) {
        self.protocols = protocols.map { Array($0.utf8) }
    }

    /// Length-prefixed protocol list as TLS carries it; `nil` if a name is
    /// empty or longer than 255 bytes.
    static func wireFormat(_ protocols: [String]) -> [UInt8]? {
        var wire: [UInt8] = []
        for name in protocols {
            let bytes = Array(name.utf8)
            guard !bytes.isEmpty, bytes.count <= 255 else { return nil }
            wire.append(UInt8(bytes.count))
            wire.append(contentsOf: bytes)
        }
        return wire
    }
}

/// OpenSSL's ALPN selection: the first of our protocols that the client
/// offers; no overlap ends the handshake with `no_application_protocol`.
private func alpnSelect(
    _ ssl: OpaquePointer?,
    _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
    _ outLength: UnsafeMutablePointer<UInt8>?,
    _ offered: UnsafePointer<UInt8>?,
    _ offeredLength: UInt32,
    _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let argument, let offered, let out, let outLength else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    let preferences = Unmanaged<ALPNPreferences>.fromOpaque(argument).takeUnretainedValue()
    let offeredBytes = UnsafeBufferPointer(start: offered, count: Int(offeredLength))
    for wanted in preferences.protocols {
        var index = 0
        while index < offeredBytes.count {
            let length = Int(offeredBytes[index])
            let start = index + 1
            guard start + length <= offeredBytes.count else { break }
            if length == wanted.count && offeredBytes[start..<start + length].elementsEqual(wanted) {
                out.pointee = offered + start
                outLength.pointee = UInt8(length)
                return SSL_TLSEXT_ERR_OK
            }
            index = start + length
        }
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL
}

/// Refuses a ClientHello that carries no ALPN extension.
private func clientHelloRequiresALPN(
    _ ssl: OpaquePointer?,
    _ alert: UnsafeMutablePointer<Int32>?,
    _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    var data: UnsafePointer<UInt8>? = nil
    var length = 0
    let alpnExtension: UInt32 = 16  // TLSEXT_TYPE_application_layer_protocol_negotiation
    if SSL_client_hello_get0_ext(ssl, alpnExtension, &data, &length) == 1 {
        return SSL_CLIENT_HELLO_SUCCESS
    }
    alert?.pointee = SSL_AD_NO_APPLICATION_PROTOCOL
    return SSL_CLIENT_HELLO_ERROR
}

/// OpenSSL's thread-local error queue as text.
enum OpenSSLErrors {
    /// Empties the queue and joins its entries, oldest first.
    static func drain() -> String {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(
                String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return messages.isEmpty ? "no OpenSSL error recorded" : messages.joined(separator: "; ")
    }
}
