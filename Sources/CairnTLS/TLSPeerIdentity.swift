import COpenSSL

#if canImport(Glibc)
    import Glibc
#endif

/// Who the peer is, read from its certificate after OpenSSL verified the
/// chain. Authorization (etcd's CN-as-user, SPIFFE tenant IDs, gateway
/// identities) is decided from these fields by the layers above.
public struct TLSPeerIdentity: Sendable, Hashable {
    /// The subject's common name, if any.
    public var commonName: String?
    /// SAN DNS names.
    public var dnsNames: [String]
    /// SAN IP addresses as text ("127.0.0.1", "::1").
    public var ipAddresses: [String]
    /// SAN URIs, such as SPIFFE IDs ("spiffe://cairn/tenant-a").
    public var uris: [String]

    public init(commonName: String?, dnsNames: [String], ipAddresses: [String], uris: [String]) {
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.uris = uris
    }

    /// Reads the identity of an `X509 *`.
    init(certificate: OpaquePointer) {
        self.init(commonName: Self.commonName(certificate), dnsNames: [], ipAddresses: [], uris: [])
        guard let names = cairn_X509_subject_alt_names(certificate) else { return }
        defer { cairn_GENERAL_NAMES_free(names) }
        for index in 0..<cairn_GENERAL_NAMES_count(names) {
            guard let name = cairn_GENERAL_NAMES_at(names, index) else { continue }
            var length: Int32 = 0
            guard let data = cairn_GENERAL_NAME_data(name, &length), length >= 0 else { continue }
            let bytes = UnsafeBufferPointer(start: data, count: Int(length))
            switch cairn_GENERAL_NAME_type(name) {
            case GEN_DNS: dnsNames.append(String(decoding: bytes, as: UTF8.self))
            case GEN_URI: uris.append(String(decoding: bytes, as: UTF8.self))
            case GEN_IPADD:
                if let text = Self.ipAddressText(bytes) { ipAddresses.append(text) }
            default: break
            }
        }
    }

    private static func commonName(_ certificate: OpaquePointer) -> String? {
        guard let subject = X509_get_subject_name(certificate) else { return nil }
        let index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(subject, index),
            let value = X509_NAME_ENTRY_get_data(entry)
        else { return nil }
        var utf8: UnsafeMutablePointer<UInt8>? = nil
        let length = ASN1_STRING_to_UTF8(&utf8, value)
        guard length >= 0, let utf8 else { return nil }
        defer { CRYPTO_free(utf8, #fileID, #line) }
        return String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self)
    }

    /// Formats 4 or 16 address octets; other lengths are malformed.
    private static func ipAddressText(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        let family: Int32
        switch bytes.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return nil
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(family, bytes.baseAddress, &text, socklen_t(text.count)) != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Fired (as a user inbound event) when the handshake succeeded, before any
/// application data is passed on.
public struct TLSHandshakeCompletedEvent: Sendable, Hashable {
    /// The ALPN protocol both sides agreed on ("h2"), if any.
    public var negotiatedProtocol: String?
    /// The negotiated protocol version.
    public var version: TLSVersion
    /// The verified peer certificate's identity; `nil` when the peer sent
    /// none (a client to a server that does not ask for one).
    public var peerIdentity: TLSPeerIdentity?
}

/// Fired (as a user inbound event) when the handshake failed, just before
/// the handler closes the channel. The handler logs nothing; the owner of
/// the pipeline logs `reason` (OpenSSL's text, with the certificate
/// verification result when that was the cause).
public struct TLSHandshakeFailedEvent: Sendable, Hashable {
    public var reason: String
}

/// Fired (as a user inbound event) when the peer closed the session cleanly
/// with close_notify, telling a complete stream from a truncated one.
public struct TLSCloseNotifyReceivedEvent: Sendable, Hashable {}
