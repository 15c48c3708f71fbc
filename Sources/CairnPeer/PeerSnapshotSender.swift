import NIOCore

/// Why a snapshot send failed; its text goes into `PeerSnapshotOutcome.failed`.
struct PeerSnapshotSendError: Error, CustomStringConvertible {
    var description: String
}

/// The dialler's handler on a snapshot connection. It says hello, sends the
/// header and waits until the receiver accepts both (so a refusal, e.g. for
/// size, arrives before any data is in flight), then writes chunks only while
/// the channel is writable, ends with the checksum of the chunk checksums, and
/// completes `promise` when the receiver acknowledges or refuses.
final class PeerSnapshotSendHandler: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = ByteBuffer

    /// The send's lifecycle, in wire order.
    enum State {
        case awaitingHelloAnswer
        case awaitingHeaderAnswer
        case streaming(offset: Int)
        case awaitingAcknowledgement
        case finished
    }

    private var state = State.awaitingHelloAnswer
    private let hello: PeerHello
    private let metadata: [UInt8]
    private let data: [UInt8]
    private let chunkBytes: Int
    private let promise: EventLoopPromise<Void>
    private var checksum = PeerChecksum()

    init(hello: PeerHello, metadata: [UInt8], data: [UInt8], chunkBytes: Int, promise: EventLoopPromise<Void>)
    {
        precondition(chunkBytes > 0, "snapshot chunks must hold at least one byte")
        self.hello = hello
        self.metadata = metadata
        self.data = data
        self.chunkBytes = chunkBytes
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        self.write(.hello(self.hello), context: context)
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (self.state, self.unwrapInboundIn(data)) {
        case (.awaitingHelloAnswer, .accepted):
            self.state = .awaitingHeaderAnswer
            self.write(
                .snapshotHeader(totalBytes: UInt64(self.data.count), metadata: self.metadata),
                context: context)
            context.flush()
        case (.awaitingHeaderAnswer, .accepted):
            self.state = .streaming(offset: 0)
            self.writeChunks(context: context)
        case (.awaitingAcknowledgement, .snapshotAccepted):
            self.finish(.success(()), context: context)
        case (_, .refused(let refusal)):
            self.finish(.failure(PeerSnapshotSendError(description: refusal.text)), context: context)
        case (.finished, _):
            break
        default:
            self.finish(
                .failure(PeerSnapshotSendError(description: "unexpected frame from peer")), context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .streaming = self.state, context.channel.isWritable {
            self.writeChunks(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finish(
            .failure(
                PeerSnapshotSendError(description: "connection closed before the snapshot was acknowledged")),
            context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.finish(.failure(PeerSnapshotSendError(description: "\(error)")), context: context)
    }

    /// Writes chunks while the channel takes them; after the last, the end frame.
    private func writeChunks(context: ChannelHandlerContext) {
        guard case .streaming(var offset) = self.state else { return }
        while offset < self.data.count && context.channel.isWritable {
            let end = min(offset + self.chunkBytes, self.data.count)
            let chunk = self.data[offset..<end]
            let chunkChecksum = PeerChecksum.of(chunk)
            self.checksum.update(chunkChecksum: chunkChecksum)
            var buffer = context.channel.allocator.buffer(
                capacity: PeerWire.frameHeaderBytes + PeerWire.chunkOverheadBytes + chunk.count)
            buffer.writePeerFrameHeader(.snapshotChunk, bodyBytes: PeerWire.chunkOverheadBytes + chunk.count)
            buffer.writeInteger(chunkChecksum)
            buffer.writeBytes(chunk)
            context.write(self.wrapOutboundOut(buffer), promise: nil)
            offset = end
        }
        if offset == self.data.count {
            self.state = .awaitingAcknowledgement
            self.write(.snapshotEnd(checksum: self.checksum.value), context: context)
        } else {
            self.state = .streaming(offset: offset)
        }
        context.flush()
    }

    private func write(_ frame: PeerFrame, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64 + self.metadata.count)
        buffer.writePeerFrame(frame)
        context.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    private func finish(_ result: Result<Void, PeerSnapshotSendError>, context: ChannelHandlerContext) {
        if case .finished = self.state { return }
        self.state = .finished
        self.promise.completeWith(result.mapError { $0 as any Error })
        context.close(promise: nil)
    }
}
