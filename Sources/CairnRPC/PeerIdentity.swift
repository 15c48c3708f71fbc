/// Who is on the other end of a connection, as proven by its TLS certificate.
///
/// The TLS layer fires an `RPCPeerIdentityEvent` after a verified handshake;
/// the RPC connection handler keeps it and hands it to every call, so services
/// (and the gateway's tenant policy) decide on a proven identity rather than on
/// anything the client merely claims. Plaintext connections have none.
public struct PeerIdentity: Sendable, Equatable, Hashable {
    /// The certificate subject's common name.
    public var commonName: String?
    /// Subject alternative names of type URI (for example `spiffe://…`).
    public var uris: [String]
    /// Subject alternative names of type DNS.
    public var dnsNames: [String]
    /// Subject alternative names of type IP address, in text form.
    public var ipAddresses: [String]

    public init(commonName: String?, uris: [String] = [], dnsNames: [String] = [], ipAddresses: [String] = [])
    {
        self.commonName = commonName
        self.uris = uris
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
    }
}

/// Fired down the pipeline by the TLS layer once the peer's certificate is verified.
public struct RPCPeerIdentityEvent: Sendable {
    public var identity: PeerIdentity

    public init(identity: PeerIdentity) {
        self.identity = identity
    }
}
