import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What every connection of one transport shares: identity, limits, callbacks.
struct PeerContext: Sendable {
    let memberID: UInt64
    let clusterID: UInt64
    let limits: PeerLimits
    let handlers: PeerTransportHandlers
    let channelInitializer: PeerChannelInitializer?

    func log(_ level: PeerLogLevel, _ message: String) {
        self.handlers.log(level, message)
    }
}

/// The messages waiting for one peer, shared between callers of `send` (any
/// thread) and the peer's event loop, under one lock.
///
/// Invariants:
/// 1. `messages.count <= queuedMessagesMax` and `bytes <= queuedBytesMax`;
///    `bytes` is the sum of the queued payloads' sizes.
/// 2. At most one drain task is scheduled (`drainScheduled`), and only while
///    `writerReady` (connected and writable) was last observed.
/// 3. Once `closed`, nothing is queued again.
struct PeerMessageQueue {
    var messages = CircularBuffer<[UInt8]>()
    var bytes = 0
    var writerReady = false
    var drainScheduled = false
    var closed = false
    var sent = 0
    var dropped = 0
    /// Set after a drop reported the peer unreachable; cleared when a
    /// message goes out, so a long outage reports once per episode, not per message.
    var dropReported = false

    /// The outcome of offering a message, and whether the caller must
    /// schedule a drain or report the peer unreachable.
    mutating func offer(_ payload: [UInt8], limits: PeerLimits) -> (
        PeerSendOutcome, drain: Bool, report: Bool
    ) {
        guard !self.closed else {
            self.dropped += 1
            return (.droppedShutDown, false, false)
        }
        guard payload.count <= limits.messageBytesMax else {
            self.dropped += 1
            return (.droppedTooLarge, false, false)
        }
        guard self.messages.count < limits.queuedMessagesMax,
            self.bytes + payload.count <= limits.queuedBytesMax
        else {
            self.dropped += 1
            let report = !self.dropReported
            self.dropReported = true
            return (.droppedQueueFull, false, report)
        }
        self.messages.append(payload)
        self.bytes += payload.count
        let drain = self.writerReady && !self.drainScheduled
        if drain { self.drainScheduled = true }
        return (.queued, drain, false)
    }

    /// The next message to write, or `nil` (ending this drain) if none.
    mutating func popForWrite() -> [UInt8]? {
        guard let payload = self.messages.popFirst() else {
            self.drainScheduled = false
            return nil
        }
        self.bytes -= payload.count
        self.sent += 1
        self.dropReported = false
        return payload
    }

    /// Records whether the connection can take writes; `true` if the caller
    /// should drain now (it became ready with messages waiting).
    mutating func setWriterReady(_ ready: Bool) -> Bool {
        self.writerReady = ready
        guard ready, !self.messages.isEmpty, !self.drainScheduled else {
            if !ready { self.drainScheduled = false }
            return false
        }
        self.drainScheduled = true
        return true
    }

    /// Closes the queue, discarding (and counting) what is left.
    mutating func close() {
        self.closed = true
        self.writerReady = false
        self.dropped += self.messages.count
        self.messages.removeAll()
        self.bytes = 0
    }
}

/// The message connection's lifecycle, owned by the peer's event loop.
///
/// Invariants:
/// 1. `generation` grows whenever an attempt is abandoned (URL change,
///    close, failure); callbacks carrying an older generation are ignored.
/// 2. `closed` is final.
struct PeerConnectionMachine {
    enum State {
        case idle
        case connecting
        case handshaking(any Channel)
        case connected(any Channel)
        case backingOff(Scheduled<Void>)
        case closed
    }

    var state: State = .idle
    var url: PeerURL
    var backoff: PeerBackoff
    var generation = 0
    var connectionsEstablished = 0

    /// The channel of the current attempt, if it has one.
    var channel: (any Channel)? {
        switch self.state {
        case .handshaking(let channel), .connected(let channel): return channel
        case .idle, .connecting, .backingOff, .closed: return nil
        }
    }
}

/// The outbound side for one peer: a bounded message queue and one
/// long-lived connection that is redialled with jittered backoff.
///
/// `send` may be called from any thread and never blocks; everything about
/// the connection happens on `eventLoop`, which writes queued messages in
/// batches (one flush per drain) and stops while the channel is not writable.
final class PeerOutbound: Sendable {
    let memberID: UInt64
    let eventLoop: any EventLoop
    private let context: PeerContext
    private let queue = NIOLockedValueBox(PeerMessageQueue())
    private let machine: NIOLoopBoundBox<PeerConnectionMachine>

    init(memberID: UInt64, url: PeerURL, context: PeerContext, eventLoop: any EventLoop, seed: UInt64) {
        self.memberID = memberID
        self.eventLoop = eventLoop
        self.context = context
        let backoff = PeerBackoff(
            initial: context.limits.reconnectDelayInitial, maximum: context.limits.reconnectDelayMax,
            seed: seed ^ (memberID &* 0x9E37_79B9_7F4A_7C15))
        self.machine = .makeBoxSendingValue(
            PeerConnectionMachine(url: url, backoff: backoff), eventLoop: eventLoop)
    }

    /// Queues `payload` (never blocks); see `PeerSendOutcome`.
    func send(_ payload: [UInt8]) -> PeerSendOutcome {
        let (outcome, drain, report) = self.queue.withLockedValue {
            $0.offer(payload, limits: self.context.limits)
        }
        if drain {
            self.eventLoop.execute { self.drain() }
        }
        if report {
            self.context.log(
                .warning, "dropped message to peer \(memberIDText(self.memberID)): its queue is full")
            self.context.handlers.peerUnreachable(self.memberID)
        }
        return outcome
    }

    /// Starts dialling.
    func start() {
        self.eventLoop.execute { self.dial() }
    }

    /// Points the connection at a new URL: the current connection (if any)
    /// is dropped and the new address dialled at once.
    func update(url: PeerURL) {
        self.eventLoop.execute {
            guard self.machine.value.url != url else { return }
            self.machine.value.url = url
            guard self.abandonAttempt() else { return }
            self.dial()
        }
    }

    /// Closes the connection for good and discards queued messages (counted
    /// as dropped). The future completes once the channel is closed.
    func close() -> EventLoopFuture<Void> {
        self.queue.withLockedValue { $0.close() }
        return self.eventLoop.submit { () -> (any Channel)? in
            let channel = self.machine.value.channel
            _ = self.abandonAttempt()
            self.machine.value.state = .closed
            return channel
        }.flatMap { channel in
            guard let channel else { return self.eventLoop.makeSucceededVoidFuture() }
            return channel.close().recover { _ in }
        }
    }

    func statistics() -> EventLoopFuture<PeerStatistics> {
        self.eventLoop.submit {
            let machine = self.machine.value
            var connected = false
            if case .connected = machine.state { connected = true }
            return self.queue.withLockedValue { queue in
                PeerStatistics(
                    connected: connected, connectionsEstablished: machine.connectionsEstablished,
                    messagesSent: queue.sent, messagesDropped: queue.dropped,
                    queuedMessages: queue.messages.count,
                    queuedBytes: queue.bytes)
            }
        }
    }

    // MARK: on the event loop

    /// Ends the current attempt (closing its channel, cancelling its timer);
    /// `false` if the machine is closed.
    private func abandonAttempt() -> Bool {
        self.eventLoop.preconditionInEventLoop()
        let machine = self.machine.value
        switch machine.state {
        case .closed:
            return false
        case .handshaking(let channel), .connected(let channel):
            channel.close(promise: nil)
        case .backingOff(let task):
            task.cancel()
        case .idle, .connecting:
            break
        }
        self.machine.value.generation += 1
        self.machine.value.state = .idle
        _ = self.queue.withLockedValue { $0.setWriterReady(false) }
        return true
    }

    private func dial() {
        guard case .idle = self.machine.value.state else {
            if case .backingOff = self.machine.value.state {
                self.machine.value.state = .idle
                return self.dial()
            }
            return
        }
        self.machine.value.generation += 1
        self.machine.value.state = .connecting
        let generation = self.machine.value.generation
        let url = self.machine.value.url
        let context = self.context
        let memberID = self.memberID
        ClientBootstrap(group: self.eventLoop)
            .connectTimeout(self.context.limits.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try context.channelInitializer?(channel, .dialling(memberID: memberID, url: url))
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(
                        ByteToMessageHandler(PeerFrameDecoder(frameBytesMax: context.limits.frameBytesMax)))
                    try pipeline.addHandler(
                        PeerDialHandler(
                            owner: self, generation: generation, timeout: context.limits.handshakeTimeout))
                }
            }
            .connect(host: url.host, port: url.port)
            .whenComplete { result in
                switch result {
                case .success(let channel): self.connected(channel, generation: generation)
                case .failure(let error):
                    self.failed(generation: generation, because: "dial failed: \(error)")
                }
            }
    }

    private func connected(_ channel: any Channel, generation: Int) {
        guard generation == self.machine.value.generation else {
            channel.close(promise: nil)
            return
        }
        if case .connecting = self.machine.value.state {
            self.machine.value.state = .handshaking(channel)
        }
    }

    /// The peer accepted our hello: messages may flow.
    func accepted(_ channel: any Channel, generation: Int) {
        guard generation == self.machine.value.generation else { return }
        switch self.machine.value.state {
        case .connecting, .handshaking: break
        case .idle, .connected, .backingOff, .closed: return
        }
        self.machine.value.state = .connected(channel)
        self.machine.value.backoff.reset()
        self.machine.value.connectionsEstablished += 1
        self.context.log(
            .info,
            "established TCP streaming connection with remote peer \(memberIDText(self.memberID)); peer became active"
        )
        self.writabilityChanged(channel, generation: generation)
    }

    /// The peer refused our hello; the handler closes the channel next.
    func refused(_ refusal: PeerRefusal, generation: Int) {
        guard generation == self.machine.value.generation else { return }
        self.context.log(
            .warning,
            "request sent was ignored by remote peer \(memberIDText(self.memberID)) (\(refusal.text))")
    }

    func writabilityChanged(_ channel: any Channel, generation: Int) {
        guard generation == self.machine.value.generation, case .connected = self.machine.value.state else {
            return
        }
        if self.queue.withLockedValue({ $0.setWriterReady(channel.isWritable) }) {
            self.drain()
        }
    }

    /// The connection of `generation` is gone: report and redial later.
    func failed(generation: Int, because reason: String) {
        guard generation == self.machine.value.generation else { return }
        switch self.machine.value.state {
        case .connecting, .handshaking, .connected: break
        case .idle, .backingOff, .closed: return
        }
        if case .connected = self.machine.value.state {
            self.context.log(
                .warning,
                "peer \(memberIDText(self.memberID)) became inactive (message send to peer failed: \(reason))"
            )
        }
        _ = self.queue.withLockedValue { $0.setWriterReady(false) }
        self.machine.value.generation += 1
        let delay = self.machine.value.backoff.nextDelay()
        self.context.log(
            .debug,
            "peer \(memberIDText(self.memberID)) unreachable (\(reason)); redialling in \(delay.nanoseconds / 1_000_000) ms"
        )
        let task = self.eventLoop.scheduleTask(in: delay) { self.dial() }
        self.machine.value.state = .backingOff(task)
        self.context.handlers.peerUnreachable(self.memberID)
    }

    /// Writes queued messages while the channel is writable, then flushes once.
    private func drain() {
        guard case .connected(let channel) = self.machine.value.state else {
            _ = self.queue.withLockedValue { $0.setWriterReady(false) }
            return
        }
        var written = 0
        while channel.isWritable, let payload = self.queue.withLockedValue({ $0.popForWrite() }) {
            var buffer = channel.allocator.buffer(capacity: PeerWire.frameHeaderBytes + payload.count)
            buffer.writePeerFrame(.message(payload))
            channel.write(buffer, promise: nil)
            written += 1
        }
        if written > 0 { channel.flush() }
        if !channel.isWritable {
            _ = self.queue.withLockedValue { $0.setWriterReady(false) }
        }
    }
}

/// The dialler's handler on a message connection: says hello, waits for the
/// answer within the handshake timeout, and reports to its `PeerOutbound`.
final class PeerDialHandler: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = ByteBuffer

    private let owner: PeerOutbound
    private let generation: Int
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var reason = "connection closed"

    init(owner: PeerOutbound, generation: Int, timeout: TimeAmount) {
        self.owner = owner
        self.generation = generation
        self.timeout = timeout
    }

    func channelActive(context: ChannelHandlerContext) {
        let hello = PeerHello(
            protocolVersion: PeerWire.protocolVersion, kind: .messages, clusterID: self.owner.clusterID,
            senderID: self.owner.localMemberID, receiverID: self.owner.memberID)
        var buffer = context.channel.allocator.buffer(
            capacity: PeerWire.frameHeaderBytes + PeerWire.helloBodyBytes)
        buffer.writePeerFrame(.hello(hello))
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: self.timeout) {
            self.reason = "no handshake answer in time"
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .accepted:
            self.timer?.cancel()
            self.owner.accepted(context.channel, generation: self.generation)
        case .refused(let refusal):
            self.reason = "refused: \(refusal.text)"
            self.owner.refused(refusal, generation: self.generation)
            context.close(promise: nil)
        default:
            self.reason = "unexpected frame from peer"
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.owner.writabilityChanged(context.channel, generation: self.generation)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.owner.failed(generation: self.generation, because: self.reason)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.reason = "\(error)"
        context.close(promise: nil)
    }
}

extension PeerOutbound {
    var clusterID: UInt64 { self.context.clusterID }
    var localMemberID: UInt64 { self.context.memberID }
}
