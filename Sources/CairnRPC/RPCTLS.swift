import CairnTLS
import NIOCore

/// TLS in front of the HTTP/2 handler of an RPC server or client, with the
/// system OpenSSL (CairnTLS). The same value serves every connection of a
/// server or of a client pool: each new connection takes the reloader's
/// current OpenSSL context, so rotated certificates apply to new connections
/// without a restart.
///
/// The pipeline it builds, before the HTTP/2 handler:
/// `TLSHandler` → `RPCTLSEventHandler` → `NIOHTTP2Handler` → gRPC handler.
/// The event handler turns a verified certificate into an
/// `RPCPeerIdentityEvent` (so every call's `RPCContext.peer` carries it) and
/// reports failed handshakes to `onHandshakeFailure` (the TLS handler has
/// already closed the connection). The peer transport can install the same
/// handlers in its own channel initializer with `addHandlers(to:serverName:)`.
public struct RPCTLS: Sendable {
    /// Where new connections take their OpenSSL context from.
    public let contexts: TLSContextReloader
    /// Told, on the connection's event loop, why a handshake failed and who
    /// the peer was (when known). The owner logs it; nothing is logged here.
    public var onHandshakeFailure: (@Sendable (_ peer: SocketAddress?, _ reason: String) -> Void)?

    public init(
        contexts: TLSContextReloader,
        onHandshakeFailure: (@Sendable (_ peer: SocketAddress?, _ reason: String) -> Void)? = nil
    ) {
        self.contexts = contexts
        self.onHandshakeFailure = onHandshakeFailure
    }

    /// Builds the context now, so unusable files fail at startup with the
    /// file and OpenSSL's reason rather than on the first connection.
    public init(
        configuration: TLSConfiguration, role: TLSRole,
        onHandshakeFailure: (@Sendable (_ peer: SocketAddress?, _ reason: String) -> Void)? = nil
    ) throws(TLSError) {
        self.init(
            contexts: try TLSContextReloader(configuration: configuration, role: role),
            onHandshakeFailure: onHandshakeFailure)
    }

    public var role: TLSRole { self.contexts.role }

    /// Adds the TLS handler (it must come first: it sees the raw bytes) and
    /// the event handler after it. Call before adding the HTTP/2 handlers.
    /// - Parameter serverName: clients only: the name sent as SNI and checked
    ///   against the server certificate; the configuration's `serverName`
    ///   wins when set (an operator override), else this one (the host dialled).
    public func addHandlers(to pipeline: ChannelPipeline.SynchronousOperations, serverName: String? = nil)
        throws
    {
        let context = self.contexts.current
        let name = self.role == .client ? (context.configuration.serverName ?? serverName) : nil
        try pipeline.addHandler(TLSHandler(context: context, serverName: name))
        try pipeline.addHandler(RPCTLSEventHandler(onHandshakeFailure: self.onHandshakeFailure))
    }
}

extension PeerIdentity {
    /// The RPC layer's view of a verified certificate.
    public init(_ identity: TLSPeerIdentity) {
        self.init(
            commonName: identity.commonName, uris: identity.uris, dnsNames: identity.dnsNames,
            ipAddresses: identity.ipAddresses)
    }
}

/// Sits right after the `TLSHandler`: passes every event on, adds an
/// `RPCPeerIdentityEvent` when the handshake completed with a verified peer
/// certificate, and remembers and reports why a handshake failed (a client
/// connection puts the reason in the error its calls see). It also
/// remembers a fatal record-layer error: with TLS 1.3 a client finishes its
/// handshake before the server checks the client certificate, so the
/// server's refusal arrives as an alert after it.
final class RPCTLSEventHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let onHandshakeFailure: (@Sendable (SocketAddress?, String) -> Void)?
    /// Why TLS failed (handshake or record layer), once it has.
    private(set) var failure: String?
    /// The negotiated protocol version, once the handshake completed.
    private(set) var version: TLSVersion?

    init(onHandshakeFailure: (@Sendable (SocketAddress?, String) -> Void)?) {
        self.onHandshakeFailure = onHandshakeFailure
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let completed as TLSHandshakeCompletedEvent:
            self.version = completed.version
            context.fireUserInboundEventTriggered(event)
            if let identity = completed.peerIdentity {
                context.fireUserInboundEventTriggered(RPCPeerIdentityEvent(identity: PeerIdentity(identity)))
            }
        case let failed as TLSHandshakeFailedEvent:
            self.failure = "TLS handshake failed: \(failed.reason)"
            self.onHandshakeFailure?(context.channel.remoteAddress, failed.reason)
            context.fireUserInboundEventTriggered(event)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let tlsError = error as? TLSError, tlsError.kind == .recordLayer, self.failure == nil {
            self.failure = tlsError.message
        }
        context.fireErrorCaught(error)
    }
}

@available(*, unavailable)
extension RPCTLSEventHandler: Sendable {}
