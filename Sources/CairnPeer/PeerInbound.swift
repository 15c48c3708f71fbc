import NIOCore

/// A snapshot being received: its declared size and metadata, the bytes so
/// far and their running checksum.
///
/// Invariants:
/// 1. `data.count <= totalBytes <= snapshotBytesMax` (checked at the header).
/// 2. `checksum` is the CRC-32C of the accepted chunks' checksums, in order.
///
/// A class so chunks append in place (a value inside the handler's state
/// enum would be copied, megabytes at a time).
final class PeerSnapshotReceipt {
    let from: UInt64
    let metadata: [UInt8]
    let totalBytes: Int
    private(set) var data: [UInt8] = []
    private var checksum = PeerChecksum()

    init(from: UInt64, metadata: [UInt8], totalBytes: Int) {
        self.from = from
        self.metadata = metadata
        self.totalBytes = totalBytes
        self.data.reserveCapacity(totalBytes)
    }

    /// Appends a chunk after checking it; a refusal if it is corrupt or runs
    /// past the declared length.
    func append(_ chunk: [UInt8], checksum: UInt32) -> PeerRefusal? {
        let chunkChecksum = PeerChecksum.of(chunk)
        guard chunkChecksum == checksum else {
            return PeerRefusal(
                .snapshotCorrupt, "snapshot chunk checksum mismatch at byte \(self.data.count)")
        }
        guard self.data.count + chunk.count <= self.totalBytes else {
            return PeerRefusal(
                .snapshotCorrupt, "snapshot data runs past its declared \(self.totalBytes) bytes")
        }
        self.data.append(contentsOf: chunk)
        self.checksum.update(chunkChecksum: chunkChecksum)
        return nil
    }

    /// The whole snapshot if its length and checksum match the sender's.
    func finish(checksum: UInt32) -> Result<PeerSnapshot, PeerRefusal> {
        guard self.data.count == self.totalBytes else {
            return .failure(
                PeerRefusal(
                    .snapshotCorrupt, "snapshot ended at \(self.data.count) of \(self.totalBytes) bytes"))
        }
        guard self.checksum.value == checksum else {
            return .failure(PeerRefusal(.snapshotCorrupt, "snapshot checksum mismatch"))
        }
        return .success(PeerSnapshot(from: self.from, metadata: self.metadata, data: self.data))
    }
}

/// The listener's handler for one accepted connection: checks the hello
/// (protocol version, cluster ID, receiver ID), then delivers messages in
/// batches (one callback per read burst) or receives one snapshot.
final class PeerAcceptHandler: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = ByteBuffer

    /// The connection's lifecycle; frames that do not fit the state close it.
    enum State {
        case awaitingHello
        case receivingMessages(from: UInt64)
        case awaitingSnapshotHeader(from: UInt64)
        case receivingSnapshot(PeerSnapshotReceipt)
        /// Refused, or the snapshot was answered: nothing more is read.
        case finished
    }

    private var state = State.awaitingHello
    private var batch: [[UInt8]] = []
    private let peer: PeerContext
    private var timer: Scheduled<Void>?

    init(context: PeerContext) {
        self.peer = context
    }

    func channelActive(context: ChannelHandlerContext) {
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: self.peer.limits.handshakeTimeout) {
            if case .awaitingHello = self.state {
                self.peer.log(.debug, "closed a peer connection that sent no hello in time")
                context.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.deliverBatch()
        if case .receivingSnapshot(let receipt) = self.state {
            self.peer.log(
                .warning,
                "snapshot from peer \(memberIDText(receipt.from)) broke off at \(receipt.data.count) of \(receipt.totalBytes) bytes"
            )
        }
        self.state = .finished
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch (self.state, frame) {
        case (.awaitingHello, .hello(let hello)):
            self.timer?.cancel()
            self.greet(hello, context: context)
        case (.receivingMessages, .message(let payload)):
            self.batch.append(payload)
        case (.awaitingSnapshotHeader(let from), .snapshotHeader(let totalBytes, let metadata)):
            self.beginSnapshot(from: from, totalBytes: totalBytes, metadata: metadata, context: context)
        case (.receivingSnapshot(let receipt), .snapshotChunk(let chunk, let checksum)):
            if let refusal = receipt.append(chunk, checksum: checksum) {
                self.refuse(refusal, context: context)
            }
        case (.receivingSnapshot(let receipt), .snapshotEnd(let checksum)):
            self.state = .finished
            self.endSnapshot(receipt, checksum: checksum, context: context)
        case (.finished, _):
            break
        default:
            self.refuse(PeerRefusal(.malformedFrame, "unexpected frame from peer"), context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.deliverBatch()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.deliverBatch()
        guard case .finished = self.state else {
            return self.refuse(
                PeerRefusal(.malformedFrame, "bad frame from peer: \(error)"), context: context)
        }
        context.close(promise: nil)
    }

    private func deliverBatch() {
        guard !self.batch.isEmpty, case .receivingMessages(let from) = self.state else { return }
        let payloads = self.batch
        self.batch.removeAll(keepingCapacity: true)
        self.peer.handlers.messagesReceived(from, payloads)
    }

    /// Answers a hello: `accepted`, or a refusal logged in etcd's words.
    private func greet(_ hello: PeerHello, context: ChannelHandlerContext) {
        if let refusal = Self.check(hello, against: self.peer) {
            return self.refuse(refusal, context: context)
        }
        switch hello.kind {
        case .messages: self.state = .receivingMessages(from: hello.senderID)
        case .snapshot: self.state = .awaitingSnapshotHeader(from: hello.senderID)
        }
        self.writeAndFlush(.accepted, context: context)
    }

    /// Why `hello` must be refused, or `nil` if it may proceed. Logs the
    /// refusal with the texts etcd's rafthttp uses, so operators recognise it.
    static func check(_ hello: PeerHello, against peer: PeerContext) -> PeerRefusal? {
        let local = memberIDText(peer.memberID)
        let remote = memberIDText(hello.senderID)
        guard hello.protocolVersion == PeerWire.protocolVersion else {
            peer.log(
                .warning,
                "failed to check version: incompatible version (local-member-id=\(local), remote-peer-id=\(remote), remote-protocol-version=\(hello.protocolVersion), local-protocol-version=\(PeerWire.protocolVersion))"
            )
            return PeerRefusal(.incompatibleVersion, "incompatible version")
        }
        guard hello.clusterID == peer.clusterID else {
            peer.log(
                .warning,
                "request cluster ID mismatch (local-member-id=\(local), local-member-cluster-id=\(memberIDText(peer.clusterID)), remote-peer-id=\(remote), remote-peer-cluster-id=\(memberIDText(hello.clusterID)))"
            )
            return PeerRefusal(
                .clusterIDMismatch,
                "cluster ID mismatch: local=\(memberIDText(hello.clusterID)), remote=\(memberIDText(peer.clusterID))"
            )
        }
        guard hello.receiverID == peer.memberID else {
            peer.log(
                .warning,
                "ignored streaming request; ID mismatch (local-member-id=\(local), remote-peer-id=\(remote), requested-member-id=\(memberIDText(hello.receiverID)))"
            )
            return PeerRefusal(.receiverIDMismatch, "to field mismatch")
        }
        return nil
    }

    private func beginSnapshot(
        from: UInt64, totalBytes: UInt64, metadata: [UInt8], context: ChannelHandlerContext
    ) {
        let limits = self.peer.limits
        guard totalBytes <= UInt64(limits.snapshotBytesMax) else {
            self.peer.log(
                .warning,
                "refused snapshot from peer \(memberIDText(from)): \(totalBytes) bytes exceeds the limit of \(limits.snapshotBytesMax)"
            )
            return self.refuse(
                PeerRefusal(
                    .snapshotTooLarge,
                    "snapshot of \(totalBytes) bytes exceeds the receiver's limit of \(limits.snapshotBytesMax) bytes"
                ),
                context: context)
        }
        guard metadata.count <= limits.snapshotMetadataBytesMax else {
            return self.refuse(
                PeerRefusal(
                    .snapshotTooLarge, "snapshot metadata of \(metadata.count) bytes exceeds the limit"),
                context: context)
        }
        self.peer.log(
            .info, "receiving database snapshot from peer \(memberIDText(from)) (\(totalBytes) bytes)")
        self.state = .receivingSnapshot(
            PeerSnapshotReceipt(from: from, metadata: metadata, totalBytes: Int(totalBytes)))
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: limits.snapshotSendTimeout) {
            if case .receivingSnapshot = self.state {
                self.peer.log(
                    .warning, "snapshot from peer \(memberIDText(from)) did not finish in time; dropped it")
                self.state = .finished
                context.close(promise: nil)
            }
        }
        self.writeAndFlush(.accepted, context: context)
    }

    private func endSnapshot(_ receipt: PeerSnapshotReceipt, checksum: UInt32, context: ChannelHandlerContext)
    {
        self.timer?.cancel()
        switch receipt.finish(checksum: checksum) {
        case .failure(let refusal):
            self.refuse(refusal, context: context)
        case .success(let snapshot):
            do {
                try self.peer.handlers.snapshotReceived(snapshot)
            } catch {
                return self.refuse(
                    PeerRefusal(.snapshotRejected, "snapshot rejected: \(error)"), context: context)
            }
            self.peer.log(
                .info,
                "received database snapshot from peer \(memberIDText(snapshot.from)) (\(snapshot.data.count) bytes)"
            )
            self.writeAndFlush(.snapshotAccepted, context: context)
        }
    }

    /// Sends `refusal` and closes once it is written.
    private func refuse(_ refusal: PeerRefusal, context: ChannelHandlerContext) {
        self.state = .finished
        self.timer?.cancel()
        self.batch.removeAll()
        var buffer = context.channel.allocator.buffer(capacity: 64)
        buffer.writePeerFrame(.refused(refusal))
        context.writeAndFlush(self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func writeAndFlush(_ frame: PeerFrame, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 16)
        buffer.writePeerFrame(frame)
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
    }
}
