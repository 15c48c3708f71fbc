import NIOCore
import NIOHPACK
import NIOHTTP2

/// The whole gRPC server side of one HTTP/2 connection, in one handler.
///
/// It sits right after `NIOHTTP2Handler` and sees every stream's frames, so a
/// call costs no child channel, no pipeline and no task hop: HEADERS route the
/// stream to a registered method, DATA is deframed into messages that are
/// decoded and handed to the service on this event loop, and answers go out as
/// frames that are flushed once per read burst.
final class ServerConnectionHandler: ChannelDuplexHandler, CoalescingFrameWriter {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// The connection's lifecycle: it drains after a graceful shutdown request
    /// (GOAWAY sent, running calls finish, new streams refused) and then closes.
    enum State {
        case active
        case draining
        case closed
    }

    static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    private static let okTrailers: HPACKHeaders = ["grpc-status": "0"]
    private static let keepalivePing = HTTP2PingData(withInteger: 0x4361_6972_6E4B_4150)

    let router: RPCServiceRouter
    let configuration: RPCServerConfiguration
    private(set) var peerIdentity: PeerIdentity?
    private(set) var remoteAddress: SocketAddress?
    /// A service's own state for this client connection (`RPCContext.connectionState`).
    var serviceState: AnyObject?
    private(set) var context: ChannelHandlerContext?
    private var state: State = .active
    private var calls: [HTTP2StreamID: ServerCall] = [:]
    /// Request bytes received but not yet forming whole messages, over all calls.
    private var partialRequestBytes = 0
    private var highestStreamID: HTTP2StreamID = .rootStream
    var flushes = FlushCoalescer()
    private var windowUpdates: InboundWindowUpdates
    private var readSinceKeepaliveCheck = false
    private var hasStarted = false
    private var keepaliveTask: Scheduled<Void>?
    private var pingTimeoutTask: Scheduled<Void>?
    /// One timer for the deadlines of all calls, armed for the earliest
    /// (`deadlineArmed`): a timer per call, scheduled and then cancelled
    /// when the call ended a few milliseconds later, cost 4-5% of a busy
    /// gateway's CPU.
    private var deadlineTask: Scheduled<Void>?
    private var deadlineTaskDue: NIODeadline?

    init(router: RPCServiceRouter, configuration: RPCServerConfiguration) {
        self.router = router
        self.configuration = configuration
        self.windowUpdates = InboundWindowUpdates(
            streamTargetBytes: configuration.streamWindowBytes,
            connectionTargetBytes: configuration.connectionWindowBytes)
    }

    var eventLoop: any EventLoop { self.context!.eventLoop }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.remoteAddress = context.channel.remoteAddress
        if context.channel.isActive { self.started(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.started(context: context)
        context.fireChannelActive()
    }

    private func started(context: ChannelHandlerContext) {
        guard !self.hasStarted else { return }
        self.hasStarted = true
        let increment = self.configuration.connectionWindowBytes - 65_535
        if increment > 0 {
            self.write(
                HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)))
        }
        self.scheduleKeepaliveCheck()
        self.flushIfNeeded()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.state = .closed
        self.keepaliveTask?.cancel()
        self.pingTimeoutTask?.cancel()
        self.deadlineTask?.cancel()
        self.deadlineTask = nil
        let calls = self.calls
        self.calls = [:]
        for call in calls.values { call.streamClosed() }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.flushes.readBurstBegan()
        self.readSinceKeepaliveCheck = true
        let frame = self.unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let headers):
            if let call = self.calls[frame.streamID] {
                if headers.endStream { self.requestEnded(call) }
            } else {
                self.streamOpened(frame.streamID, headers: headers.headers, endStream: headers.endStream)
            }
        case .data(let data):
            guard let call = self.calls[frame.streamID], case .byteBuffer(let buffer) = data.data else {
                return
            }
            self.received(buffer, endStream: data.endStream, on: call)
        case .rstStream:
            self.removeCall(frame.streamID)?.streamClosed()
        case .ping(_, ack: true):
            self.pingTimeoutTask?.cancel()
            self.pingTimeoutTask = nil
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.flushes.readBurstEnded()
        self.flushIfNeeded()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Ordered by frequency: every DATA frame brings a window event.
        switch event {
        case let window as NIOHTTP2WindowUpdatedEvent:
            self.windowChanged(window)
        case is NIOHTTP2StreamCreatedEvent:
            break
        case let closed as StreamClosedEvent:
            self.removeCall(closed.streamID)?.streamClosed()
            self.closeIfDrained()
        case let identity as RPCPeerIdentityEvent:
            self.peerIdentity = identity.identity
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func triggerUserOutboundEvent(
        context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?
    ) {
        guard event is RPCServer.GracefulShutdownEvent else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        self.beginDraining()
        promise?.succeed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Stream errors have already reset just that stream (a StreamClosedEvent
        // follows); anything else means the connection cannot continue.
        if error is NIOHTTP2Errors.StreamError { return }
        context.close(promise: nil)
    }

    // MARK: Calls

    /// Validates a new stream's headers and starts its call, or answers it with
    /// the error gRPC prescribes.
    private func streamOpened(_ streamID: HTTP2StreamID, headers: HPACKHeaders, endStream: Bool) {
        if streamID > self.highestStreamID { self.highestStreamID = streamID }
        guard case .active = self.state else {
            self.writeReset(streamID, .refusedStream)
            return
        }
        let request = RequestHead(headers)
        let method: RegisteredMethod
        switch request.route(router: self.router) {
        case .method(let found):
            method = found
        case .rejected(let rejection):
            self.reject(streamID, rejection, requestEnded: endStream)
            return
        }
        let deadline = request.timeout.map { NIODeadline.now() + $0 }
        let call = ServerCall(
            streamID: streamID, path: request.path, requestHeaders: headers, deadline: deadline,
            requestBytesMax: method.requestBytesMax ?? self.configuration.requestBytesMax, connection: self)
        self.calls[streamID] = call
        call.armDeadline()
        switch method.kind {
        case .unary(let handler): call.unaryHandler = handler
        case .streaming(let open): call.sink = open(call)
        }
        if endStream { self.requestEnded(call) }
    }

    private func reject(_ streamID: HTTP2StreamID, _ rejection: RequestHead.Rejection, requestEnded: Bool) {
        switch rejection {
        case .httpStatus(let code):
            self.writeHeaders(streamID, [":status": String(code)], endStream: true)
        case .grpcStatus(let status):
            var trailers = Self.trailers(status, trailersOnly: true)
            trailers.add(name: "grpc-accept-encoding", value: "identity")
            self.writeHeaders(streamID, trailers, endStream: true)
        }
        if !requestEnded { self.writeReset(streamID, .noError) }
    }

    private func received(_ buffer: ByteBuffer, endStream: Bool, on call: ServerCall) {
        guard !call.isFinished else { return }
        call.deframer.append(buffer)
        defer { self.accountPartialBytes(of: call) }
        while !call.isFinished {
            let message: ByteBuffer
            do {
                guard let next = try call.deframer.nextMessage() else { break }
                message = next
            } catch .tooLarge(let length, let limit) {
                call.reset(
                    RPCStatus(
                        .resourceExhausted, "grpc: received message larger than max (\(length) vs. \(limit))")
                )
                return
            } catch {
                call.reset(RPCStatus(.internal, "grpc: compressed flag set with identity or empty encoding"))
                return
            }
            if call.unaryHandler != nil {
                guard call.unaryRequest == nil else {
                    call.reset(
                        RPCStatus(.internal, "grpc: received more than one request message for a unary call"))
                    return
                }
                call.unaryRequest = message
            } else if let status = call.sink?.receive(message) {
                call.reset(status)
                return
            }
        }
        if endStream { self.requestEnded(call) }
    }

    /// Keeps the connection's total of partially received request bytes and
    /// resets the call that pushes it past `connectionPartialRequestBytesMax`:
    /// each stream is bounded by the message limit, and this bounds their sum.
    private func accountPartialBytes(of call: ServerCall) {
        let buffered = call.isFinished ? 0 : call.deframer.bufferedBytes
        self.partialRequestBytes += buffered - call.accountedRequestBytes
        call.accountedRequestBytes = buffered
        if self.partialRequestBytes > self.configuration.connectionPartialRequestBytesMax {
            call.reset(
                RPCStatus(
                    .resourceExhausted, "cairn: too many partially received request bytes on this connection")
            )
            self.partialRequestBytes -= call.accountedRequestBytes
            call.accountedRequestBytes = 0
        }
    }

    /// Forgets a call whose stream closed, with its share of partial bytes.
    private func removeCall(_ streamID: HTTP2StreamID) -> ServerCall? {
        guard let call = self.calls.removeValue(forKey: streamID) else { return nil }
        self.partialRequestBytes -= call.accountedRequestBytes
        call.accountedRequestBytes = 0
        return call
    }

    private func requestEnded(_ call: ServerCall) {
        call.requestEnded()
        guard !call.isFinished else { return }
        if call.deframer.bufferedBytes > 0 {
            call.reset(RPCStatus(.internal, "grpc: request ended inside a message"))
        } else if let handler = call.unaryHandler {
            guard let request = call.unaryRequest else {
                call.finish(RPCStatus(.internal, "grpc: request ended without a message"))
                return
            }
            call.unaryRequest = nil
            handler(request, call)
        } else {
            call.sink?.end()
        }
    }

    // MARK: Deadlines

    /// A call with `deadline` began: the timer fires no later than it.
    func deadlineArmed(_ deadline: NIODeadline) {
        if let due = self.deadlineTaskDue, due <= deadline { return }
        self.deadlineTask?.cancel()
        self.scheduleDeadlineSweep(at: deadline)
    }

    private func scheduleDeadlineSweep(at due: NIODeadline) {
        if case .closed = self.state { return }
        guard let context = self.context else { return }
        self.deadlineTaskDue = due
        self.deadlineTask = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) {
            self.sweepDeadlines()
        }
    }

    /// Ends the calls whose deadline passed; the timer moves to the next one.
    private func sweepDeadlines() {
        self.deadlineTask = nil
        self.deadlineTaskDue = nil
        let now = NIODeadline.now()
        var next: NIODeadline?
        for call in self.calls.values where !call.isFinished {
            guard let deadline = call.deadline else { continue }
            if deadline <= now {
                call.deadlineExceeded()
            } else {
                next = min(next ?? deadline, deadline)
            }
        }
        if let next { self.scheduleDeadlineSweep(at: next) }
    }

    // MARK: Flow control, keepalive, shutdown

    /// Notes a window change; the WINDOW_UPDATEs go out from a deferred task
    /// (see `InboundWindowUpdates` for why not from inside this event).
    private func windowChanged(_ event: NIOHTTP2WindowUpdatedEvent) {
        guard let window = event.inboundWindowSize, let context = self.context,
            self.windowUpdates.record(event.streamID, windowBytes: window)
        else { return }
        context.eventLoop.assumeIsolated().execute {
            let due = self.windowUpdates.takeDue { streamID in
                self.calls[streamID].map { !$0.isFinished } ?? false
            }
            for frame in due { self.write(frame) }
        }
    }

    private func scheduleKeepaliveCheck() {
        guard let interval = self.configuration.keepaliveInterval, let context = self.context else { return }
        self.keepaliveTask = context.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.keepaliveCheck()
            if case .closed = self.state { return }
            self.scheduleKeepaliveCheck()
        }
    }

    /// Pings an idle peer; closes the connection if the ping is not answered
    /// within `keepaliveTimeout` (a peer that vanished without a FIN).
    private func keepaliveCheck() {
        defer { self.readSinceKeepaliveCheck = false }
        guard !self.readSinceKeepaliveCheck, self.pingTimeoutTask == nil, let context = self.context else {
            return
        }
        self.write(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.keepalivePing, ack: false)))
        self.pingTimeoutTask = context.eventLoop.assumeIsolated().scheduleTask(
            in: self.configuration.keepaliveTimeout
        ) {
            self.context?.close(promise: nil)
        }
    }

    private func beginDraining() {
        guard case .active = self.state, let context = self.context else { return }
        self.state = .draining
        self.write(
            HTTP2Frame(
                streamID: .rootStream,
                payload: .goAway(lastStreamID: self.highestStreamID, errorCode: .noError, opaqueData: nil)))
        self.flushIfNeeded()
        context.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.shutdownGracePeriod) {
            self.context?.close(promise: nil)
        }
        self.closeIfDrained()
    }

    /// Closes a draining connection once its last call ended. The close waits
    /// for the next event-loop tick: the last call's trailers may still be on
    /// their way through the HTTP/2 handler when its stream reports closed.
    private func closeIfDrained() {
        guard case .draining = self.state, self.calls.isEmpty, let context = self.context else { return }
        self.state = .closed
        context.eventLoop.assumeIsolated().execute {
            self.flushIfNeeded()
            self.context?.close(promise: nil)
        }
    }

    // MARK: Writing

    func writeHeaders(_ streamID: HTTP2StreamID, _ headers: HPACKHeaders, endStream: Bool) {
        self.write(
            HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: headers, endStream: endStream))))
    }

    func writeData(_ streamID: HTTP2StreamID, _ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        self.write(
            HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(buffer)))), promise: promise
        )
    }

    func writeReset(_ streamID: HTTP2StreamID, _ code: HTTP2ErrorCode) {
        self.write(HTTP2Frame(streamID: streamID, payload: .rstStream(code)))
    }

    static func trailers(_ status: RPCStatus, trailersOnly: Bool) -> HPACKHeaders {
        if status.code == .ok && !trailersOnly { return Self.okTrailers }
        var headers: HPACKHeaders = trailersOnly ? Self.responseHeaders : [:]
        headers.add(name: "grpc-status", value: String(status.code.rawValue))
        if !status.message.isEmpty {
            headers.add(name: "grpc-message", value: PercentEncoding.encode(status.message))
        }
        return headers
    }
}

/// The parts of a request's HEADERS that decide whether and how to serve it.
struct RequestHead {
    /// Why a request is answered without reaching a service.
    enum Rejection {
        case httpStatus(Int)
        case grpcStatus(RPCStatus)
    }

    var path = ""
    var method = ""
    var contentType = ""
    var encoding: String?
    var timeoutText: String?
    var timeout: TimeAmount?

    init(_ headers: HPACKHeaders) {
        for (name, value, _) in headers {
            switch name {
            case ":path": self.path = value
            case ":method": self.method = value
            case "content-type": self.contentType = value
            case "grpc-encoding": self.encoding = value
            case "grpc-timeout":
                self.timeoutText = value
                self.timeout = GRPCTimeout.parse(Substring(value))
            default: break
            }
        }
    }

    /// Where a request goes: its registered method, or the answer it gets instead.
    enum Routing {
        case method(RegisteredMethod)
        case rejected(Rejection)
    }

    func route(router: RPCServiceRouter) -> Routing {
        if self.method != "POST" { return .rejected(.httpStatus(405)) }
        if !self.contentType.hasPrefix("application/grpc") { return .rejected(.httpStatus(415)) }
        if let encoding = self.encoding, encoding != "identity" {
            return .rejected(
                .grpcStatus(
                    RPCStatus(
                        .unimplemented,
                        "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\"")))
        }
        if let text = self.timeoutText, self.timeout == nil {
            return .rejected(.grpcStatus(RPCStatus(.internal, "transport: malformed grpc-timeout: \(text)")))
        }
        guard let method = router.methods[self.path] else {
            return .rejected(.grpcStatus(router.unknownMethodStatus(path: self.path)))
        }
        return .method(method)
    }
}
