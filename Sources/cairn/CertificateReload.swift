import CairnRPC
import CairnTLS
import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// The TLS contexts a member built at startup, kept so that certificates
/// rotate without a restart: on SIGHUP each context re-reads its files.
/// Connections already open keep the certificate they started with; new
/// connections (client and peer, accepted and dialled) take the new one.
///
/// Properties:
/// 1. A reload that fails (a half-written file, a key that does not match
///    the certificate, an unreadable CA) changes nothing for that context:
///    it keeps serving its previous certificate, and the log says so.
/// 2. Every context is tried, whatever happened to the others, and each
///    outcome is one log line naming the context and the certificate file.
struct MemberTLSContexts: Sendable {
    /// The `https://` client URLs' server context (`--cert-file`...).
    var client: RPCTLS?
    /// Accepted peer connections (`--peer-cert-file`...).
    var peerServer: RPCTLS?
    /// Peer connections this member dials (`--peer-cert-file`...).
    var peerClient: RPCTLS?
    /// This member's calls to another member's `https://` client URL
    /// (`--cert-file` as the client certificate, `--trusted-ca-file`).
    var forwarding: RPCTLS?

    /// The contexts by the name the log uses.
    var named: [(name: String, tls: RPCTLS)] {
        [
            ("client", self.client), ("peer server", self.peerServer), ("peer client", self.peerClient),
            ("forwarding client", self.forwarding),
        ].compactMap { name, tls in tls.map { (name, $0) } }
    }

    /// Re-reads every context's files (property 1 and 2).
    func reload(log: (String) -> Void) {
        let named = self.named
        if named.isEmpty { log("SIGHUP: no TLS certificate is configured, nothing to reload") }
        for (name, tls) in named {
            let file = tls.contexts.configuration.certificateChainFile ?? "(none)"
            do {
                try tls.contexts.reload()
                log(
                    "reloaded \(name) TLS certificate from \(file): new connections present "
                        + Self.describe(tls.contexts.current.certificateIdentity))
            } catch {
                log(
                    "reloading \(name) TLS certificate from \(file) failed, still presenting "
                        + "\(Self.describe(tls.contexts.current.certificateIdentity)): \(error.message)")
            }
        }
    }

    /// "CN=m1 (DNS:localhost, IP:127.0.0.1)" for the log.
    static func describe(_ identity: TLSPeerIdentity?) -> String {
        guard let identity else { return "no certificate" }
        let names =
            identity.dnsNames.map { "DNS:\($0)" } + identity.ipAddresses.map { "IP:\($0)" }
            + identity.uris.map { "URI:\($0)" }
        let commonName = "CN=\(identity.commonName ?? "")"
        return names.isEmpty ? commonName : "\(commonName) (\(names.joined(separator: ", ")))"
    }
}

/// Calls `body` on every SIGHUP for the rest of the process's life (the
/// operator's "reload certificates" signal, as for most daemons). SIGHUP no
/// longer terminates the process once this ran.
func onReloadSignal(_ body: @escaping @Sendable () -> Void) {
    signal(SIGHUP, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "cairn.reload"))
    source.setEventHandler {
        // Capturing the source keeps it alive for the process's life.
        _ = source
        body()
    }
    source.resume()
}
