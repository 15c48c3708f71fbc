import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Moves opaque payloads between the members of one cluster: one long-lived
/// framed TCP connection per peer for messages, and a separate connection
/// per snapshot. It knows nothing of Raft: the member shell encodes and
/// decodes messages, and feeds `peerUnreachable` and `snapshotSent` back
/// into Raft.
///
/// Guarantees: messages to one peer over one connection arrive in the order
/// they were queued; messages may be lost (queue bound, broken connection),
/// never duplicated by the transport or reordered on a connection; `send`
/// never blocks and memory per peer is bounded (`PeerLimits`).
///
/// Lifecycle (`State`): `start` binds the listener and dials every
/// configured peer; `shutdown` closes the listener and every connection,
/// discards queued messages and fails snapshot sends in flight.
public final class PeerTransport: Sendable {
    /// The transport's lifecycle.
    enum State {
        case running
        case shutDown
    }

    /// A snapshot send in flight, tracked so shutdown can end it.
    struct SnapshotSend {
        /// Tells this send from a later one to the same member.
        var token: Int
        var channel: (any Channel)?
    }

    /// Everything mutable that is shared across threads, under one lock.
    ///
    /// Invariants:
    /// 1. `peers` never holds this member's own ID.
    /// 2. At most one snapshot send per member is in flight (`snapshotSends`).
    /// 3. Once `shutDown`, no peer, channel or send is added.
    struct Registry {
        var state = State.running
        var peers: [UInt64: PeerOutbound] = [:]
        var inbound: [ObjectIdentifier: any Channel] = [:]
        var urls: [UInt64: PeerURL] = [:]
        var snapshotSends: [UInt64: SnapshotSend] = [:]
        var unknownPeerDrops = 0
        var snapshotTokens = 0
    }

    /// The address the listener is bound to (its port when 0 was asked for).
    public let localAddress: SocketAddress
    /// This member's ID.
    public let memberID: UInt64
    private let context: PeerContext
    private let group: any EventLoopGroup
    private let listener: any Channel
    private let registry: NIOLockedValueBox<Registry>
    private let backoffSeed: UInt64

    private init(
        configuration: PeerTransportConfiguration, context: PeerContext, group: any EventLoopGroup,
        listener: any Channel, registry: NIOLockedValueBox<Registry>
    ) {
        self.localAddress = listener.localAddress!
        self.memberID = configuration.memberID
        self.context = context
        self.group = group
        self.listener = listener
        self.registry = registry
        self.backoffSeed = configuration.backoffSeed
    }

    /// Binds the peer listener and starts dialling the configured peers.
    /// The transport runs on `group`, which the caller owns and shuts down
    /// after `shutdown`.
    public static func start(
        configuration: PeerTransportConfiguration, group: any EventLoopGroup, handlers: PeerTransportHandlers
    ) async throws -> PeerTransport {
        let context = PeerContext(
            memberID: configuration.memberID, clusterID: configuration.clusterID,
            limits: configuration.limits,
            handlers: handlers, channelInitializer: configuration.channelInitializer)
        let registry = NIOLockedValueBox(Registry())
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.configureAccepted(channel, context: context, registry: registry)
                }
            }
            .bind(host: configuration.listenHost, port: configuration.listenPort).get()
        let transport = PeerTransport(
            configuration: configuration, context: context, group: group, listener: listener,
            registry: registry)
        for (memberID, url) in configuration.peers {
            transport.setPeer(memberID, url: url)
        }
        context.log(
            .info,
            "peer transport of member \(memberIDText(configuration.memberID)) listening on \(transport.localAddress)"
        )
        return transport
    }

    /// Sets up an accepted connection; refuses it if the transport is shut down.
    private static func configureAccepted(
        _ channel: any Channel, context: PeerContext, registry: NIOLockedValueBox<Registry>
    ) throws {
        let key = ObjectIdentifier(channel)
        let open = registry.withLockedValue { registry -> Bool in
            guard case .running = registry.state,
                registry.inbound.count < context.limits.inboundConnectionsMax
            else {
                return false
            }
            registry.inbound[key] = channel
            return true
        }
        guard open else {
            context.log(
                .warning,
                "refused a peer connection: shut down or at \(context.limits.inboundConnectionsMax) connections"
            )
            throw ChannelError.ioOnClosedChannel
        }
        channel.closeFuture.whenComplete { _ in
            _ = registry.withLockedValue { $0.inbound.removeValue(forKey: key) }
        }
        try context.channelInitializer?(channel, .accepted)
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(
            ByteToMessageHandler(PeerFrameDecoder(frameBytesMax: context.limits.frameBytesMax)))
        try pipeline.addHandler(PeerAcceptHandler(context: context))
    }

    // MARK: messages

    /// Queues `payload` for `memberID` and returns at once. Anything but
    /// `.queued` means the message was dropped (and counted).
    @discardableResult
    public func send(to memberID: UInt64, payload: [UInt8]) -> PeerSendOutcome {
        let peer = self.registry.withLockedValue { registry -> Result<PeerOutbound, PeerSendFailure> in
            guard case .running = registry.state else { return .failure(.init(outcome: .droppedShutDown)) }
            guard let peer = registry.peers[memberID] else {
                registry.unknownPeerDrops += 1
                return .failure(.init(outcome: .droppedUnknownPeer))
            }
            return .success(peer)
        }
        switch peer {
        case .success(let peer): return peer.send(payload)
        case .failure(let failure): return failure.outcome
        }
    }

    /// A send that failed before reaching a peer's queue.
    private struct PeerSendFailure: Error {
        var outcome: PeerSendOutcome
    }

    // MARK: membership

    /// Adds a peer, or points an existing one at a new URL (its connection
    /// is then redialled). Ignored for this member's own ID and after shutdown.
    public func setPeer(_ memberID: UInt64, url: PeerURL) {
        guard memberID != self.memberID else { return }
        let added = self.registry.withLockedValue { registry -> PeerOutbound? in
            guard case .running = registry.state else { return nil }
            registry.urls[memberID] = url
            if let existing = registry.peers[memberID] {
                existing.update(url: url)
                return nil
            }
            let peer = PeerOutbound(
                memberID: memberID, url: url, context: self.context, eventLoop: self.group.next(),
                seed: self.backoffSeed)
            registry.peers[memberID] = peer
            return peer
        }
        added?.start()
    }

    /// Removes a peer: its connection closes and its queued messages are
    /// discarded. Messages from it are still accepted (Raft ignores them).
    public func removePeer(_ memberID: UInt64) {
        let removed = self.registry.withLockedValue { registry in
            registry.urls.removeValue(forKey: memberID)
            return registry.peers.removeValue(forKey: memberID)
        }
        _ = removed?.close()
    }

    /// The member IDs this transport sends to, sorted.
    public var peerIDs: [UInt64] {
        self.registry.withLockedValue { Array($0.peers.keys).sorted() }
    }

    /// Counters of one peer's outbound side, or `nil` if it is not configured.
    public func statistics(of memberID: UInt64) async -> PeerStatistics? {
        guard let peer = self.registry.withLockedValue({ $0.peers[memberID] }) else { return nil }
        return try? await peer.statistics().get()
    }

    /// Messages sent to member IDs that are not configured.
    public var unknownPeerDrops: Int {
        self.registry.withLockedValue { $0.unknownPeerDrops }
    }

    // MARK: snapshots

    /// Sends a snapshot on its own connection, in chunks of
    /// `snapshotChunkBytes`, and reports the outcome through `snapshotSent`
    /// (always on an event loop, never before this returns). One send per
    /// peer at a time: a second one fails at once.
    public func sendSnapshot(to memberID: UInt64, metadata: [UInt8], data: [UInt8]) {
        let eventLoop = self.group.next()
        let promise = eventLoop.makePromise(of: Void.self)
        let reserved = self.registry.withLockedValue {
            registry -> Result<(PeerURL, Int), PeerSnapshotSendError> in
            guard case .running = registry.state else {
                return .failure(.init(description: "peer transport is shut down"))
            }
            guard let url = registry.urls[memberID] else {
                return .failure(.init(description: "member \(memberIDText(memberID)) is not a known peer"))
            }
            guard registry.snapshotSends[memberID] == nil else {
                return .failure(.init(description: "a snapshot is already being sent to this member"))
            }
            registry.snapshotTokens += 1
            registry.snapshotSends[memberID] = SnapshotSend(token: registry.snapshotTokens)
            return .success((url, registry.snapshotTokens))
        }
        switch reserved {
        case .failure(let error):
            promise.futureResult.whenComplete {
                self.snapshotFinished(memberID, bytes: data.count, result: $0)
            }
            eventLoop.execute { promise.fail(error) }
        case .success(let (url, token)):
            promise.futureResult.whenComplete { result in
                self.registry.withLockedValue { registry in
                    if registry.snapshotSends[memberID]?.token == token {
                        registry.snapshotSends.removeValue(forKey: memberID)
                    }
                }
                self.snapshotFinished(memberID, bytes: data.count, result: result)
            }
            let connection = self.dialSnapshot(
                to: memberID, url: url, metadata: metadata, data: data, on: eventLoop, promise: promise)
            connection.whenSuccess { channel in
                let running = self.registry.withLockedValue { registry -> Bool in
                    guard case .running = registry.state, registry.snapshotSends[memberID]?.token == token
                    else {
                        return false
                    }
                    registry.snapshotSends[memberID]?.channel = channel
                    return true
                }
                if !running { channel.close(promise: nil) }
            }
        }
    }

    /// Opens the snapshot connection; the handler completes `promise`. A
    /// timeout closes the connection if the send takes too long.
    private func dialSnapshot(
        to memberID: UInt64, url: PeerURL, metadata: [UInt8], data: [UInt8], on eventLoop: any EventLoop,
        promise: EventLoopPromise<Void>
    ) -> EventLoopFuture<any Channel> {
        let context = self.context
        let hello = PeerHello(
            protocolVersion: PeerWire.protocolVersion, kind: .snapshot, clusterID: context.clusterID,
            senderID: context.memberID, receiverID: memberID)
        context.log(
            .info, "sending database snapshot to peer \(memberIDText(memberID)) (\(data.count) bytes)")
        let connection = ClientBootstrap(group: eventLoop)
            .connectTimeout(context.limits.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try context.channelInitializer?(channel, .dialling(memberID: memberID, url: url))
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(
                        ByteToMessageHandler(PeerFrameDecoder(frameBytesMax: context.limits.frameBytesMax)))
                    try pipeline.addHandler(
                        PeerSnapshotSendHandler(
                            hello: hello, metadata: metadata, data: data,
                            chunkBytes: context.limits.snapshotChunkBytes,
                            promise: promise))
                }
            }
            .connect(host: url.host, port: url.port)
        connection.whenFailure { error in
            promise.fail(PeerSnapshotSendError(description: "dial failed: \(error)"))
        }
        let timeout = eventLoop.scheduleTask(in: context.limits.snapshotSendTimeout) {
            promise.fail(PeerSnapshotSendError(description: "snapshot send timed out"))
        }
        promise.futureResult.whenComplete { _ in
            timeout.cancel()
            connection.whenSuccess { $0.close(promise: nil) }
        }
        return connection
    }

    private func snapshotFinished(_ memberID: UInt64, bytes: Int, result: Result<Void, any Error>) {
        switch result {
        case .success:
            self.context.log(
                .info, "sent database snapshot to peer \(memberIDText(memberID)) (\(bytes) bytes)")
            self.context.handlers.snapshotSent(memberID, .delivered)
        case .failure(let error):
            self.context.log(
                .warning, "failed to send database snapshot to peer \(memberIDText(memberID)): \(error)")
            self.context.handlers.snapshotSent(memberID, .failed(reason: "\(error)"))
        }
    }

    // MARK: shutdown

    /// Closes the listener and every connection; queued messages are
    /// discarded (counted as dropped) and snapshot sends in flight fail.
    /// Idempotent.
    public func shutdown() async {
        let (peers, inbound, sends) = self.registry.withLockedValue { registry in
            registry.state = .shutDown
            defer {
                registry.peers.removeAll()
                registry.snapshotSends.removeAll()
            }
            return (
                Array(registry.peers.values), Array(registry.inbound.values),
                Array(registry.snapshotSends.values)
            )
        }
        try? await self.listener.close()
        for peer in peers {
            try? await peer.close().get()
        }
        for channel in inbound {
            try? await channel.close()
        }
        for send in sends {
            try? await send.channel?.close()
        }
        self.context.log(.info, "peer transport of member \(memberIDText(self.memberID)) shut down")
    }
}
