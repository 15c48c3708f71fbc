import NIOCore
import NIOHPACK
import NIOHTTP2

/// One gRPC call from the client side of a connection, on its event loop.
///
/// It turns response frames into messages and one final status, and makes sure
/// the status is delivered exactly once, however the call ends: trailers, a
/// reset, a deadline, a cancel, or the connection going away.
final class ClientCall {
    /// The call's lifecycle: `pending` until its connection is ready, `open`
    /// once HEADERS went out, `closed` after the status was delivered.
    enum State {
        case pending
        case open(streamID: HTTP2StreamID, requestEnded: Bool)
        case closed
    }

    let path: String
    let metadata: HPACKHeaders
    let deadline: NIODeadline?
    let eventLoop: any EventLoop
    private(set) var state: State = .pending
    private var deframer: MessageDeframer
    /// Request messages (already framed) written before the stream opened.
    private var queuedRequests: [ByteBuffer] = []
    private var requestEndQueued = false
    private var responseHeadersSeen = false
    private let onMessage: (ByteBuffer) -> RPCStatus?
    private let onClose: (RPCStatus) -> Void
    private var deadlineTask: Scheduled<Void>?
    weak var connection: ClientConnectionHandler?

    init(
        path: String, metadata: HPACKHeaders, deadline: NIODeadline?, responseBytesMax: Int,
        eventLoop: any EventLoop, onMessage: @escaping (ByteBuffer) -> RPCStatus?,
        onClose: @escaping (RPCStatus) -> Void
    ) {
        self.path = path
        self.metadata = metadata
        self.deadline = deadline
        self.eventLoop = eventLoop
        self.deframer = MessageDeframer(messageBytesMax: responseBytesMax)
        self.onMessage = onMessage
        self.onClose = onClose
        if let deadline {
            self.deadlineTask = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
                self.deadlineTask = nil
                self.cancel(RPCStatus(.deadlineExceeded, "context deadline exceeded"))
            }
        }
    }

    var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    /// The stream opened on `connection`: write what was queued meanwhile.
    func opened(streamID: HTTP2StreamID, on connection: ClientConnectionHandler) {
        guard case .pending = self.state else { return }
        self.state = .open(streamID: streamID, requestEnded: false)
        self.connection = connection
        let queued = self.queuedRequests
        self.queuedRequests = []
        for (index, message) in queued.enumerated() {
            let last = self.requestEndQueued && index == queued.count - 1
            connection.writeData(streamID, message, endStream: last)
        }
        if self.requestEndQueued {
            if queued.isEmpty { connection.writeData(streamID, ByteBuffer(), endStream: true) }
            self.state = .open(streamID: streamID, requestEnded: true)
        }
    }

    /// Sends one framed request message; `endStream` half-closes after it.
    func send(_ message: ByteBuffer?, endStream: Bool) {
        switch self.state {
        case .pending:
            if let message { self.queuedRequests.append(message) }
            if endStream { self.requestEndQueued = true }
        case .open(let streamID, let requestEnded):
            guard !requestEnded, let connection = self.connection else { return }
            connection.writeData(streamID, message ?? ByteBuffer(), endStream: endStream)
            if endStream { self.state = .open(streamID: streamID, requestEnded: true) }
        case .closed:
            break
        }
    }

    /// Ends the call locally with `status`, resetting its stream if open.
    func cancel(_ status: RPCStatus) {
        // Close first: writing the reset closes the stream synchronously, and
        // the call must already carry its own status by then.
        let connection = self.connection
        if case .open(let streamID, _) = self.state {
            self.close(status)
            connection?.writeReset(streamID)
        } else {
            self.close(status)
        }
    }

    func receivedHeaders(_ headers: HPACKHeaders, endStream: Bool) {
        guard !self.isClosed else { return }
        if !self.responseHeadersSeen {
            self.responseHeadersSeen = true
            if let status = headers.first(name: ":status"), status != "200" {
                self.cancel(
                    RPCStatus(
                        Self.statusCode(forHTTPStatus: status),
                        "unexpected HTTP status code received from server: \(status)"))
                return
            }
            if !endStream { return }
        }
        self.close(Self.status(fromTrailers: headers))
    }

    func receivedData(_ buffer: ByteBuffer, endStream: Bool) {
        guard !self.isClosed else { return }
        self.deframer.append(buffer)
        do {
            while let message = try self.deframer.nextMessage() {
                if let failure = self.onMessage(message) {
                    self.cancel(failure)
                    return
                }
            }
        } catch .tooLarge(let length, let limit) {
            self.cancel(
                RPCStatus(
                    .resourceExhausted, "grpc: received message larger than max (\(length) vs. \(limit))"))
            return
        } catch {
            self.cancel(RPCStatus(.internal, "grpc: compressed flag set with identity or empty encoding"))
            return
        }
        if endStream {
            self.close(RPCStatus(.internal, "server closed the stream without sending trailers"))
        }
    }

    /// The stream was reset by the server or closed by the connection.
    func streamClosed(reason: HTTP2ErrorCode?) {
        guard !self.isClosed else { return }
        switch reason {
        case .some(.refusedStream):
            var status = RPCStatus(.unavailable, "the server refused the stream")
            status.requestNotSent = true
            self.close(status)
        case .some(.cancel): self.close(RPCStatus(.cancelled, "the server cancelled the stream"))
        case .some(let code):
            self.close(RPCStatus(.internal, "stream terminated by RST_STREAM with error code: \(code)"))
        case .none: self.close(RPCStatus(.internal, "the stream closed without a status"))
        }
    }

    func connectionFailed(_ status: RPCStatus) {
        var status = status
        status.requestNotSent = true
        self.close(status)
    }

    private func close(_ status: RPCStatus) {
        guard !self.isClosed else { return }
        if case .open(let streamID, _) = self.state {
            self.connection?.callClosed(streamID)
        }
        self.state = .closed
        self.queuedRequests = []
        self.deadlineTask?.cancel()
        self.deadlineTask = nil
        self.onClose(status)
    }

    static func status(fromTrailers trailers: HPACKHeaders) -> RPCStatus {
        guard let codeText = trailers.first(name: "grpc-status"), let code = Int(codeText) else {
            return RPCStatus(.internal, "server sent no grpc-status")
        }
        return RPCStatus(wireCode: code, encodedMessage: trailers.first(name: "grpc-message"))
    }

    /// gRPC's mapping of a non-200 HTTP status to a status code.
    static func statusCode(forHTTPStatus status: String) -> RPCStatus.Code {
        switch status {
        case "400": .internal
        case "401": .unauthenticated
        case "403": .permissionDenied
        case "404": .unimplemented
        case "429", "502", "503", "504": .unavailable
        default: .unknown
        }
    }
}
