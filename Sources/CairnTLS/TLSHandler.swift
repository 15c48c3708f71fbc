import COpenSSL
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// TLS for one NIO channel, over OpenSSL memory BIOs: ciphertext from the
/// network is written into `readBIO`, OpenSSL's output is drained from
/// `writeBIO` into the channel. Decisions (what an event means in the
/// current lifecycle state) live in `TLSStateMachine`; this type performs
/// them. Put it first in the pipeline; handlers after it see plaintext and
/// the `TLSHandshakeCompletedEvent` / `TLSHandshakeFailedEvent` events.
///
/// It never logs: failures are events and errors for the pipeline's owner.
public final class TLSHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Plaintext bytes asked of `SSL_read` at a time (one TLS record's worth).
    static let plaintextReadChunkBytes = 16 * 1024

    let tlsContext: TLSContext
    /// The owned `SSL *`; owns both BIOs, freed in `deinit`.
    let ssl: OpaquePointer
    let readBIO: OpaquePointer
    let writeBIO: OpaquePointer
    var stateMachine = TLSStateMachine()
    /// Writes made before the handshake completed (bounded by
    /// `pendingWriteBytesMax`).
    var pendingWrites = CircularBuffer<(buffer: ByteBuffer, promise: EventLoopPromise<Void>?)>()
    var pendingWriteBytes = 0
    private var handshakeDeadline: Scheduled<Void>?

    /// A handler for one connection. `serverName` (clients only) overrides
    /// the configuration's: it is sent as SNI unless it is an IP literal and
    /// is verified against the server certificate when `verifyServerName`.
    public init(context: TLSContext, serverName: String? = nil) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.pointer) else {
            throw TLSError(.connectionSetup, "cannot create a TLS session: \(OpenSSLErrors.drain())")
        }
        guard let readBIO = BIO_new(BIO_s_mem()), let writeBIO = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError(.connectionSetup, "cannot create memory BIOs: \(OpenSSLErrors.drain())")
        }
        // An empty read BIO means "wait for more", not end of stream.
        _ = cairn_BIO_set_mem_eof_return(readBIO, -1)
        SSL_set_bio(ssl, readBIO, writeBIO)
        self.tlsContext = context
        self.ssl = ssl
        self.readBIO = readBIO
        self.writeBIO = writeBIO
        switch context.role {
        case .server:
            SSL_set_accept_state(ssl)
        case .client:
            SSL_set_connect_state(ssl)
            try Self.configurePeerName(
                ssl, serverName ?? context.configuration.serverName, context.configuration)
        }
    }

    deinit {
        SSL_free(ssl)
    }

    /// SNI and the name the server certificate must carry.
    private static func configurePeerName(
        _ ssl: OpaquePointer,
        _ name: String?,
        _ configuration: TLSConfiguration
    ) throws(TLSError) {
        guard let name else {
            if configuration.verifyServerName {
                throw TLSError(
                    .invalidConfiguration,
                    "a TLS client verifying the server name needs a server name (host name or IP address)"
                )
            }
            return
        }
        let isIPAddress = Self.isIPAddressLiteral(name)
        if !isIPAddress && cairn_SSL_set_tlsext_host_name(ssl, name) != 1 {
            throw TLSError(.connectionSetup, "cannot set SNI server name '\(name)': \(OpenSSLErrors.drain())")
        }
        guard configuration.verifyServerName else { return }
        let status =
            isIPAddress
            ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) : SSL_set1_host(ssl, name)
        guard status == 1 else {
            throw TLSError(
                .connectionSetup, "cannot verify against server name '\(name)': \(OpenSSLErrors.drain())")
        }
    }

    static func isIPAddressLiteral(_ name: String) -> Bool {
        var storage = in6_addr()
        return inet_pton(AF_INET, name, &storage) == 1 || inet_pton(AF_INET6, name, &storage) == 1
    }

    // MARK: channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        failPendingWrites(TLSError(.closed, "the TLS handler was removed before the handshake completed"))
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        failPendingWrites(TLSError(.closed, "the connection closed before the TLS handshake completed"))
        if case .failHandshake(let reason)? = stateMachine.channelInactive() {
            context.fireUserInboundEventTriggered(TLSHandshakeFailedEvent(reason: reason))
        }
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if stateMachine.state == .idle { start(context: context) }
        switch stateMachine.bytesReceived() {
        case .discard:
            return
        case .feedAndHandshake:
            feed(buffer)
            stepHandshake(context: context)
        case .feedAndRead:
            feed(buffer)
            readApplicationData(context: context)
        }
        enforceCiphertextBound(context: context)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }

    // MARK: outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch stateMachine.write() {
        case .buffer:
            let limit = tlsContext.configuration.pendingWriteBytesMax
            guard pendingWriteBytes + buffer.readableBytes <= limit else {
                promise?.fail(
                    TLSError(
                        .pendingWritesExceeded,
                        "more than \(limit) bytes written before the TLS handshake completed"
                    )
                )
                return
            }
            pendingWriteBytes += buffer.readableBytes
            pendingWrites.append((buffer, promise))
        case .encrypt:
            encryptAndWrite(context: context, buffer: buffer, promise: promise)
        case .failClosed:
            promise?.fail(TLSError(.closed, "write on a closed TLS session"))
        }
    }

    public func flush(context: ChannelHandlerContext) {
        // Before the handshake, buffered writes are flushed when it completes.
        if stateMachine.state != .idle && stateMachine.state != .handshaking {
            context.flush()
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        let wasClosing = stateMachine.state == .closing
        switch stateMachine.close() {
        case .closeNow:
            handshakeDeadline?.cancel()
            failPendingWrites(
                TLSError(.closed, "the connection was closed before the TLS handshake completed"))
            context.close(promise: promise)
        case .sendCloseNotifyThenClose:
            sendCloseNotifyThenClose(context: context, promise: promise)
        case .alreadyClosing:
            if wasClosing {
                if let promise { context.channel.closeFuture.cascade(to: promise) }
            } else {
                context.close(promise: promise)
            }
        }
    }

    // MARK: handshake

    private func start(context: ChannelHandlerContext) {
        guard stateMachine.start() == .beginHandshake else { return }
        let timeout = tlsContext.configuration.handshakeTimeout
        handshakeDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.handshakeTimedOut(context: context, timeout: timeout)
        }
        stepHandshake(context: context)
    }

    private func handshakeTimedOut(context: ChannelHandlerContext, timeout: TimeAmount) {
        let milliseconds = timeout.nanoseconds / 1_000_000
        if case .failHandshake(let reason)? = stateMachine.handshakeTimedOut(after: "\(milliseconds) ms") {
            failHandshake(context: context, reason: reason)
        }
    }

    /// Runs OpenSSL's handshake as far as the input allows and sends its output.
    private func stepHandshake(context: ChannelHandlerContext) {
        ERR_clear_error()
        let status = SSL_do_handshake(ssl)
        let result: TLSStateMachine.HandshakeResult
        if status == 1 {
            result = checkNegotiatedALPN()
        } else {
            let error = SSL_get_error(ssl, status)
            result = error == SSL_ERROR_WANT_READ ? .needsMoreInput : .failed(reason: failureReason(error))
        }
        emitCiphertext(context: context, promise: nil, flush: true)
        switch stateMachine.handshakeStepped(result) {
        case .wait:
            break
        case .completeHandshake:
            completeHandshake(context: context)
        case .failHandshake(let reason):
            failHandshake(context: context, reason: reason)
        }
    }

    /// A client that required ALPN refuses a server that selected nothing
    /// (the server side refuses during the handshake, in `TLSContext`).
    private func checkNegotiatedALPN() -> TLSStateMachine.HandshakeResult {
        let configuration = tlsContext.configuration
        guard configuration.requireALPN, !configuration.alpnProtocols.isEmpty, negotiatedProtocol() == nil
        else {
            return .complete
        }
        return .failed(
            reason: "the peer agreed on no ALPN protocol; required one of \(configuration.alpnProtocols)")
    }

    private func completeHandshake(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        // Writes made before the handshake go first, before anything the
        // event's receivers write in response to it.
        let writes = pendingWrites
        pendingWrites.removeAll()
        pendingWriteBytes = 0
        for write in writes {
            encryptAndWrite(context: context, buffer: write.buffer, promise: write.promise)
        }
        let version: TLSVersion = SSL_version(ssl) == TLS1_3_VERSION ? .tls13 : .tls12
        let event = TLSHandshakeCompletedEvent(
            negotiatedProtocol: negotiatedProtocol(),
            version: version,
            peerIdentity: verifiedPeerIdentity()
        )
        context.fireUserInboundEventTriggered(event)
        if stateMachine.state == .active {
            context.flush()
            // The peer's last flight may have carried application data.
            readApplicationData(context: context)
        }
    }

    func failHandshake(context: ChannelHandlerContext, reason: String) {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        failPendingWrites(TLSError(.closed, "the TLS handshake failed: \(reason)"))
        context.fireUserInboundEventTriggered(TLSHandshakeFailedEvent(reason: reason))
        context.close(promise: nil)
    }

    private func negotiatedProtocol() -> String? {
        var data: UnsafePointer<UInt8>? = nil
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// The identity of a peer certificate that passed chain verification.
    private func verifiedPeerIdentity() -> TLSPeerIdentity? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        guard SSL_get_verify_result(ssl) == X509_V_OK else { return nil }
        return TLSPeerIdentity(certificate: certificate)
    }

    /// OpenSSL's error queue, plus the certificate verification result when
    /// that is what failed.
    func failureReason(_ error: Int32) -> String {
        var reason: String
        switch error {
        case SSL_ERROR_SYSCALL, SSL_ERROR_ZERO_RETURN:
            reason = "the peer closed the connection: \(OpenSSLErrors.drain())"
        default:
            reason = OpenSSLErrors.drain()
        }
        let verification = SSL_get_verify_result(ssl)
        if verification != X509_V_OK, let text = X509_verify_cert_error_string(verification) {
            reason += " (certificate verification: \(String(cString: text)))"
        }
        return reason
    }
}

// MARK: record layer

extension TLSHandler {
    /// Hands ciphertext from the network to OpenSSL.
    private func feed(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
            // A memory BIO accepts everything; it grows as needed.
            _ = BIO_write(readBIO, base, Int32(bytes.count))
        }
    }

    /// After OpenSSL consumed what it could, only a partial record may
    /// remain; more than `ciphertextBufferedBytesMax` means a misbehaving
    /// peer, which is disconnected.
    private func enforceCiphertextBound(context: ChannelHandlerContext) {
        let limit = tlsContext.configuration.ciphertextBufferedBytesMax
        guard cairn_BIO_pending(readBIO) > limit else { return }
        let reason = "the peer sent more than \(limit) bytes that do not complete a TLS record"
        if stateMachine.state == .handshaking {
            _ = stateMachine.handshakeStepped(.failed(reason: reason))
            failHandshake(context: context, reason: reason)
        } else {
            failRecordLayer(context: context, reason: reason)
        }
    }

    /// Decrypts everything OpenSSL can and passes it on, one record-sized
    /// buffer at a time; handles close_notify and fatal alerts.
    private func readApplicationData(context: ChannelHandlerContext) {
        while stateMachine.state == .active {
            var buffer = context.channel.allocator.buffer(capacity: Self.plaintextReadChunkBytes)
            var status: Int32 = 0
            ERR_clear_error()
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.plaintextReadChunkBytes) { bytes in
                status = SSL_read(ssl, bytes.baseAddress, Int32(bytes.count))
                return max(Int(status), 0)
            }
            if status > 0 {
                context.fireChannelRead(wrapInboundOut(buffer))
                continue
            }
            let error = SSL_get_error(ssl, status)
            if error == SSL_ERROR_WANT_READ {
                break
            } else if error == SSL_ERROR_ZERO_RETURN {
                peerSentCloseNotify(context: context)
            } else {
                let reason = failureReason(error)
                emitCiphertext(context: context, promise: nil, flush: true)
                failRecordLayer(context: context, reason: reason)
            }
            return
        }
        // Post-handshake messages (key updates) may have produced output.
        emitCiphertext(context: context, promise: nil, flush: true)
    }

    private func peerSentCloseNotify(context: ChannelHandlerContext) {
        context.fireUserInboundEventTriggered(TLSCloseNotifyReceivedEvent())
        switch stateMachine.peerSentCloseNotify() {
        case .replyCloseNotifyThenClose:
            sendCloseNotifyThenClose(context: context, promise: nil)
        case .none:
            break
        }
    }

    private func failRecordLayer(context: ChannelHandlerContext, reason: String) {
        guard stateMachine.recordLayerFailed() else { return }
        context.fireErrorCaught(TLSError(.recordLayer, "TLS connection failed: \(reason)"))
        context.close(promise: nil)
    }

    /// Encrypts all of `buffer` (a memory BIO never asks to retry a write)
    /// and queues the records with the caller's promise.
    private func encryptAndWrite(
        context: ChannelHandlerContext,
        buffer: ByteBuffer,
        promise: EventLoopPromise<Void>?
    ) {
        guard stateMachine.state == .active else {
            promise?.fail(TLSError(.closed, "write on a closed TLS session"))
            return
        }
        var remaining = buffer
        ERR_clear_error()
        while remaining.readableBytes > 0 {
            let written = remaining.withUnsafeReadableBytes { bytes in
                SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max))))
            }
            guard written > 0 else {
                let reason = failureReason(SSL_get_error(ssl, written))
                promise?.fail(TLSError(.recordLayer, "TLS write failed: \(reason)"))
                failRecordLayer(context: context, reason: reason)
                return
            }
            remaining.moveReaderIndex(forwardBy: Int(written))
        }
        emitCiphertext(context: context, promise: promise, flush: false)
    }

    /// Moves OpenSSL's pending output into the channel.
    private func emitCiphertext(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, flush: Bool)
    {
        let pending = cairn_BIO_pending(writeBIO)
        guard pending > 0 else {
            promise?.succeed()
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
            Int(max(BIO_read(writeBIO, bytes.baseAddress, Int32(pending)), 0))
        }
        if flush {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
        } else {
            context.write(wrapOutboundOut(buffer), promise: promise)
        }
    }

    /// Sends close_notify and closes the channel once it has been written,
    /// without waiting for the peer's reply (allowed by TLS, and it bounds
    /// how long a closing connection lingers).
    private func sendCloseNotifyThenClose(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        let written = context.eventLoop.makePromise(of: Void.self)
        emitCiphertext(context: context, promise: written, flush: true)
        written.futureResult.assumeIsolated().whenComplete { _ in
            context.close(promise: promise)
        }
    }

    private func failPendingWrites(_ error: TLSError) {
        let writes = pendingWrites
        pendingWrites.removeAll()
        pendingWriteBytes = 0
        for write in writes { write.promise?.fail(error) }
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
