import CairnRPC
import CairnTLS

/// TLS to the cluster, named as etcdctl names it: `--cacert`, `--cert`,
/// `--key`. File paths only, so callers need not import the TLS module; the
/// files are read when the client is created (a bad file fails then, with
/// the file and OpenSSL's reason) and the server certificate is always
/// verified.
public struct EtcdClientTLS: Sendable, Hashable {
    /// PEM bundle of CAs that sign the members' certificates; `nil` trusts
    /// the system store.
    public var trustedCAFile: String?
    /// PEM client certificate chain (leaf first), for members that require
    /// client certificates (`--client-cert-auth`); its CN is the etcd user.
    public var certificateFile: String?
    /// PEM private key of `certificateFile`.
    public var keyFile: String?
    /// The name the members' certificates must carry (and SNI); `nil` uses
    /// the host of each endpoint (a DNS name or an IP address).
    public var serverName: String?
    /// The lowest protocol version offered.
    public var minimumVersion: TLSVersion

    public init(
        trustedCAFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
        serverName: String? = nil, minimumVersion: TLSVersion = .tls12
    ) {
        self.trustedCAFile = trustedCAFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
        self.minimumVersion = minimumVersion
    }

    /// The RPC layer's client TLS: ALPN h2 (etcd requires it), server name
    /// verified.
    func rpcTLS() throws(TLSError) -> RPCTLS {
        let configuration = TLSConfiguration(
            certificateChainFile: self.certificateFile, privateKeyFile: self.keyFile,
            trustedCAFile: self.trustedCAFile, minimumVersion: self.minimumVersion,
            serverName: self.serverName)
        return try RPCTLS(configuration: configuration, role: .client)
    }

    /// Whether an endpoint names TLS by its scheme (`https://`), as etcd's
    /// clients infer TLS from it.
    static func isSecure(endpoint: String) -> Bool {
        endpoint.lowercased().hasPrefix("https://")
    }
}
