import NIOCore
import NIOHPACK
import NIOHTTP2

/// The client side of one HTTP/2 connection: opens a stream per call, routes
/// response frames to calls, keeps flow-control credit flowing, and fails
/// every open call when the connection ends.
final class ClientConnectionHandler: ChannelDuplexHandler, CoalescingFrameWriter {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// Client stream IDs are odd and grow; past this the connection retires
    /// itself (GOAWAY-like) so a fresh one takes new calls.
    static let streamIDMax = Int(Int32.max) - 2

    private(set) var context: ChannelHandlerContext?
    private var calls: [HTTP2StreamID: ClientCall] = [:]
    private var nextStreamID = 1
    var flushes = FlushCoalescer()
    private(set) var isRetired = false
    private var windowUpdates: InboundWindowUpdates
    private let connectionWindowBytes: Int
    private let authority: String
    /// `https` behind TLS, else `http` (the `:scheme` of every request).
    private let scheme: String
    /// Told when the server sends GOAWAY or stream IDs run out: no new calls here.
    var onRetired: (() -> Void)?
    /// Told once the server's first SETTINGS arrive: the HTTP/2 connection is
    /// established both ways and calls may start (as grpc-go waits for too).
    var onReady: (() -> Void)?

    init(authority: String, scheme: String, configuration: RPCClientConfiguration) {
        self.windowUpdates = InboundWindowUpdates(
            streamTargetBytes: configuration.streamWindowBytes,
            connectionTargetBytes: configuration.connectionWindowBytes)
        self.connectionWindowBytes = configuration.connectionWindowBytes
        self.authority = authority
        self.scheme = scheme
    }

    var activeCalls: Int { self.calls.count }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Raises the connection's flow-control window once the HTTP/2 preface is out.
    func channelActive(context: ChannelHandlerContext) {
        let increment = self.connectionWindowBytes - 65_535
        if increment > 0 {
            self.write(
                HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)))
            self.flushIfNeeded()
        }
        context.fireChannelActive()
    }

    /// Opens `call`'s stream: HEADERS now, its queued messages after.
    func start(_ call: ClientCall) {
        guard !self.isRetired, let context = self.context else {
            call.connectionFailed(RPCStatus(.unavailable, "connection is closing"))
            return
        }
        let streamID = HTTP2StreamID(self.nextStreamID)
        self.nextStreamID += 2
        // Pseudo-headers must come first (RFC 9113 §8.3).
        var headers: HPACKHeaders = [
            ":method": "POST", ":scheme": self.scheme, ":path": call.path, ":authority": self.authority,
            "content-type": "application/grpc", "te": "trailers",
        ]
        if let deadline = call.deadline {
            headers.add(name: "grpc-timeout", value: GRPCTimeout.format(deadline - .now()))
        }
        headers.add(contentsOf: call.metadata)
        self.calls[streamID] = call
        // A refused HEADERS write (invalid metadata, say) must end the call, not strand it.
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenFailure { error in
            call.cancel(RPCStatus(.internal, "grpc: could not send the request headers: \(error)"))
        }
        self.write(
            HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: headers))), promise: written)
        call.opened(streamID: streamID, on: self)
        if self.nextStreamID > Self.streamIDMax { self.retire() }
    }

    func writeData(_ streamID: HTTP2StreamID, _ buffer: ByteBuffer, endStream: Bool) {
        self.write(
            HTTP2Frame(
                streamID: streamID, payload: .data(.init(data: .byteBuffer(buffer), endStream: endStream))))
    }

    func writeReset(_ streamID: HTTP2StreamID) {
        self.write(HTTP2Frame(streamID: streamID, payload: .rstStream(.cancel)))
    }

    func callClosed(_ streamID: HTTP2StreamID) {
        self.calls.removeValue(forKey: streamID)
        self.closeIfRetiredAndIdle()
    }

    private func retire() {
        guard !self.isRetired else { return }
        self.isRetired = true
        self.onRetired?()
        self.closeIfRetiredAndIdle()
    }

    private func closeIfRetiredAndIdle() {
        if self.isRetired && self.calls.isEmpty { self.context?.close(promise: nil) }
    }

    // MARK: Channel events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.flushes.readBurstBegan()
        let frame = self.unwrapInboundIn(data)
        switch frame.payload {
        case .settings(.settings):
            if let onReady = self.onReady {
                self.onReady = nil
                onReady()
            }
        case .headers(let headers):
            self.calls[frame.streamID]?.receivedHeaders(headers.headers, endStream: headers.endStream)
        case .data(let data):
            guard case .byteBuffer(let buffer) = data.data else { return }
            self.calls[frame.streamID]?.receivedData(buffer, endStream: data.endStream)
        case .rstStream(let code):
            self.calls.removeValue(forKey: frame.streamID)?.streamClosed(reason: code)
        case .goAway(let lastStreamID, _, _):
            for (streamID, call) in self.calls where streamID > lastStreamID {
                self.calls.removeValue(forKey: streamID)
                call.connectionFailed(RPCStatus(.unavailable, "the server is going away"))
            }
            self.retire()
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
        switch event {
        case let closed as StreamClosedEvent:
            self.calls.removeValue(forKey: closed.streamID)?.streamClosed(reason: closed.reason)
            self.closeIfRetiredAndIdle()
        case let window as NIOHTTP2WindowUpdatedEvent:
            // Sent from a deferred task: see `InboundWindowUpdates`.
            guard let size = window.inboundWindowSize,
                self.windowUpdates.record(window.streamID, windowBytes: size)
            else { break }
            context.eventLoop.assumeIsolated().execute {
                let due = self.windowUpdates.takeDue { self.calls[$0] != nil }
                for frame in due { self.write(frame) }
            }
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isRetired = true
        let calls = self.calls
        self.calls = [:]
        for call in calls.values {
            call.connectionFailed(RPCStatus(.unavailable, "the connection to the server was lost"))
        }
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOHTTP2Errors.StreamError { return }
        context.close(promise: nil)
    }

    // MARK: Writing

}
