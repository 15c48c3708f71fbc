import CairnTLS
import NIOCore
import NIOEmbedded

/// Records what a TLS handler passes up its pipeline.
final class EventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    var completed: TLSHandshakeCompletedEvent?
    var failed: TLSHandshakeFailedEvent?
    var closeNotifyReceived = false
    var errors: [any Error] = []
    var received = ByteBuffer()

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSHandshakeCompletedEvent { completed = event }
        if let event = event as? TLSHandshakeFailedEvent { failed = event }
        if event is TLSCloseNotifyReceivedEvent { closeNotifyReceived = true }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received.writeBuffer(&buffer)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }
}

/// A client pipeline and a server pipeline on `EmbeddedChannel`s, with the
/// bytes each writes delivered to the other by `shuttle()`.
struct EmbeddedPair {
    let client: EmbeddedChannel
    let server: EmbeddedChannel
    let clientEvents = EventRecorder()
    let serverEvents = EventRecorder()

    init(client clientContext: TLSContext, server serverContext: TLSContext, serverName: String? = nil) throws
    {
        client = EmbeddedChannel()
        server = EmbeddedChannel()
        try client.pipeline.syncOperations.addHandler(
            TLSHandler(context: clientContext, serverName: serverName))
        try client.pipeline.syncOperations.addHandler(clientEvents)
        try server.pipeline.syncOperations.addHandler(TLSHandler(context: serverContext))
        try server.pipeline.syncOperations.addHandler(serverEvents)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
        try server.connect(to: address).wait()
        try client.connect(to: address).wait()
    }

    /// Moves bytes both ways until neither side has anything to send;
    /// returns the number of buffers moved.
    @discardableResult
    func shuttle() throws -> Int {
        var moved = 0
        var progress = true
        while progress {
            progress = false
            for (from, to) in [(client, server), (server, client)] {
                while let bytes = try from.readOutbound(as: ByteBuffer.self) {
                    progress = true
                    moved += 1
                    if to.isActive { try to.writeInbound(bytes) }
                }
            }
            precondition(moved < 100_000, "the pipelines never go quiet")
        }
        return moved
    }
}
