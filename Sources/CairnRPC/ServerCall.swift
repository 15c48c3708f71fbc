import NIOCore
import NIOHPACK
import NIOHTTP2
import SwiftProtobuf

/// One gRPC call on one HTTP/2 stream of a server connection.
///
/// It lives on the connection's event loop and owns the call's lifecycle: the
/// request deframer, whether response headers went out, the deadline, and the
/// response bytes not yet written to the socket (for back-pressure).
final class ServerCall {
    /// The call's lifecycle. Responses may only be sent while `open`; once
    /// `finished` the call ignores late answers (a future completing after a
    /// cancel, for example).
    enum State: Equatable {
        case open(responseHeadersSent: Bool, requestEnded: Bool)
        case finished
    }

    let streamID: HTTP2StreamID
    let path: String
    let requestHeaders: HPACKHeaders
    let deadline: NIODeadline?
    unowned let connection: ServerConnectionHandler
    private(set) var state: State = .open(responseHeadersSent: false, requestEnded: false)
    var deframer: MessageDeframer
    /// This call's share of the connection's partial request bytes.
    var accountedRequestBytes = 0
    var sink: StreamSink?
    /// The single request of a unary call, held until END_STREAM proves there is exactly one.
    var unaryRequest: ByteBuffer?
    var unaryHandler: (@Sendable (ByteBuffer, ServerCall) -> Void)?
    private var cancelCallbacks: [() -> Void] = []

    /// Response bytes handed to the channel but not yet written to the socket.
    private(set) var unwrittenBytes = 0
    /// Set when sends crossed the high watermark; cleared when `onWritable` runs.
    private var awaitingWritable = false
    var onWritable: (() -> Void)?

    init(
        streamID: HTTP2StreamID, path: String, requestHeaders: HPACKHeaders, deadline: NIODeadline?,
        requestBytesMax: Int, connection: ServerConnectionHandler
    ) {
        self.streamID = streamID
        self.path = path
        self.requestHeaders = requestHeaders
        self.deadline = deadline
        self.deframer = MessageDeframer(messageBytesMax: requestBytesMax)
        self.connection = connection
    }

    var eventLoop: any EventLoop { self.connection.eventLoop }
    var isFinished: Bool { self.state == .finished }

    var isWritable: Bool { self.unwrittenBytes < self.connection.configuration.streamBufferedBytesHigh }

    /// Registers the call's deadline with the connection's one deadline timer.
    func armDeadline() {
        guard let deadline = self.deadline else { return }
        self.connection.deadlineArmed(deadline)
    }

    /// The client's `grpc-timeout` passed (the connection's sweep found it).
    func deadlineExceeded() {
        self.finish(RPCStatus(.deadlineExceeded, "context deadline exceeded"))
        self.notifyCancelled()
    }

    func onCancel(_ callback: @escaping () -> Void) {
        if self.isFinished { callback() } else { self.cancelCallbacks.append(callback) }
    }

    /// Sends the one response of a unary call followed by OK trailers.
    func respondUnary<Response: SwiftProtobuf.Message>(_ response: Response) {
        guard !self.isFinished else { return }
        self.sendMessage(response, trackWrite: false)
        self.finish(.ok)
    }

    /// Sends one response message; `false` if the call has already ended.
    @discardableResult
    func sendMessage<Response: SwiftProtobuf.Message>(_ response: Response, trackWrite: Bool) -> Bool {
        guard case .open(let headersSent, let requestEnded) = self.state else { return false }
        let buffer: ByteBuffer
        do {
            buffer = try response.grpcFramed()
        } catch {
            self.finish(RPCStatus(.internal, "grpc: error while marshaling: \(error)"))
            return false
        }
        if !headersSent {
            self.connection.writeHeaders(
                self.streamID, ServerConnectionHandler.responseHeaders, endStream: false)
            self.state = .open(responseHeadersSent: true, requestEnded: requestEnded)
        }
        guard trackWrite else {
            self.connection.writeData(self.streamID, buffer, promise: nil)
            return true
        }
        let bytes = buffer.readableBytes
        if self.unwrittenBytes + bytes > self.connection.configuration.streamBufferedBytesMax {
            self.reset(RPCStatus(.resourceExhausted, "cairn: stream send buffer exceeded"))
            return false
        }
        self.unwrittenBytes += bytes
        if !self.isWritable { self.awaitingWritable = true }
        let promise = self.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenComplete { _ in self.written(bytes) }
        self.connection.writeData(self.streamID, buffer, promise: promise)
        return true
    }

    private func written(_ bytes: Int) {
        self.unwrittenBytes -= bytes
        guard self.awaitingWritable,
            self.unwrittenBytes <= self.connection.configuration.streamBufferedBytesLow
        else { return }
        self.awaitingWritable = false
        if !self.isFinished { self.onWritable?() }
    }

    /// Ends the call with `status`: trailers (or a trailers-only response), then
    /// RST_STREAM(NO_ERROR) if the client is still sending, as HTTP/2 advises.
    func finish(_ status: RPCStatus) {
        guard case .open(let headersSent, let requestEnded) = self.state else { return }
        self.state = .finished
        self.connection.configuration.callFinished?(self.path, status.code)
        self.connection.writeHeaders(
            self.streamID, ServerConnectionHandler.trailers(status, trailersOnly: !headersSent),
            endStream: true)
        if !requestEnded {
            self.connection.writeReset(self.streamID, .noError)
        }
    }

    /// Ends the call abruptly after telling the client why, then tells the service.
    func reset(_ status: RPCStatus) {
        self.finish(status)
        self.notifyCancelled()
    }

    func requestEnded() {
        if case .open(let headersSent, _) = self.state {
            self.state = .open(responseHeadersSent: headersSent, requestEnded: true)
        }
    }

    /// The stream closed underneath the call (client reset, connection loss).
    func streamClosed() {
        let wasOpen = !self.isFinished
        self.state = .finished
        if wasOpen {
            self.connection.configuration.callFinished?(self.path, .cancelled)
            self.notifyCancelled()
        }
        self.onWritable = nil
    }

    private func notifyCancelled() {
        let callbacks = self.cancelCallbacks
        self.cancelCallbacks = []
        for callback in callbacks { callback() }
        if let sink = self.sink {
            self.sink = nil
            sink.cancel()
        }
    }
}

/// What a service may know about the call it is answering.
///
/// Only valid on the connection's event loop, like the call itself.
public struct RPCContext {
    let call: ServerCall

    init(call: ServerCall) {
        self.call = call
    }

    /// The method's `:path`, e.g. `/etcdserverpb.KV/Put`.
    public var path: String { self.call.path }
    /// The request's metadata (etcd clients send `token`, `hasleader`, …).
    public var headers: HPACKHeaders { self.call.requestHeaders }
    /// The identity the TLS layer proved for this connection, if any.
    public var peer: PeerIdentity? { self.call.connection.peerIdentity }
    public var remoteAddress: SocketAddress? { self.call.connection.remoteAddress }
    /// A slot a service may fill with its own state for this client
    /// connection (a gateway's per-session revision floor); it lives and
    /// dies with the connection, so nothing needs cleaning up.
    public var connectionState: AnyObject? {
        get { self.call.connection.serviceState }
        nonmutating set { self.call.connection.serviceState = newValue }
    }
    /// When the client stops waiting (from `grpc-timeout`).
    public var deadline: NIODeadline? { self.call.deadline }
    public var eventLoop: any EventLoop { self.call.eventLoop }
    public var isCancelled: Bool { self.call.isFinished }

    /// Runs `callback` on the event loop if the call ends before it is answered.
    public func onCancel(_ callback: @escaping () -> Void) {
        self.call.onCancel(callback)
    }
}

/// The sending side of a streaming call, for the service's handler.
///
/// It is bounded: `isWritable` turns false once `streamBufferedBytesHigh`
/// response bytes wait for a slow reader, and `onWritable` runs when they have
/// drained below `streamBufferedBytesLow`. A service that ignores this and
/// queues past `streamBufferedBytesMax` has the stream reset with
/// RESOURCE_EXHAUSTED: loud, never an unbounded buffer or a silent drop.
/// Use it on the call's event loop only (wrap it in `NIOLoopBound` to hand it
/// to other code).
public final class RPCServerStream<Response: SwiftProtobuf.Message> {
    let call: ServerCall

    init(call: ServerCall) {
        self.call = call
    }

    public var context: RPCContext { RPCContext(call: self.call) }
    public var eventLoop: any EventLoop { self.call.eventLoop }
    public var isWritable: Bool { self.call.isWritable }
    public var isFinished: Bool { self.call.isFinished }

    /// Runs when the stream becomes writable again after `isWritable` was false.
    public var onWritable: (() -> Void)? {
        get { self.call.onWritable }
        set { self.call.onWritable = newValue }
    }

    /// Sends one message; `false` if the call has ended (nothing was sent).
    @discardableResult
    public func send(_ response: Response) -> Bool {
        self.call.sendMessage(response, trackWrite: true)
    }

    /// Ends the call with `status` (OK by default).
    public func finish(_ status: RPCStatus = .ok) {
        self.call.finish(status)
        self.call.onWritable = nil
    }
}
