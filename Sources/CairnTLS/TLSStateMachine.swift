/// The lifecycle decisions of one TLS connection, kept apart from the I/O
/// (`TLSHandler` owns OpenSSL and the channel; this type owns what to do).
/// Each event method moves the state and returns the one action the handler
/// performs.
///
/// ```
/// idle ──start/bytes──▶ handshaking ──complete──▶ active ──close──▶ closing ──▶ closed
///   │                        │ failed / timeout / peer gone               ▲
///   └────────close───────────┴────────────────────────────────────────────┘
/// ```
///
/// Properties:
/// 1. Application data is encrypted only in `active`; writes in `idle` and
///    `handshaking` are buffered and flushed when the handshake completes.
/// 2. A handshake ends exactly once: completed (event fired, state
///    `active`) or failed (event fired, state `closed`).
/// 3. `closed` is terminal.
struct TLSStateMachine {
    enum State: Equatable {
        case idle
        case handshaking
        case active
        case closing
        case closed
    }

    private(set) var state: State = .idle

    enum StartAction: Equatable {
        /// Run `SSL_do_handshake` (the client sends its ClientHello) and arm
        /// the handshake timeout.
        case beginHandshake
        case none
    }

    enum InboundAction: Equatable {
        /// Give the bytes to OpenSSL and continue the handshake.
        case feedAndHandshake
        /// Give the bytes to OpenSSL and read application data.
        case feedAndRead
        /// Nothing can use them (closing or closed).
        case discard
    }

    enum HandshakeResult: Equatable {
        case complete
        case needsMoreInput
        case failed(reason: String)
    }

    enum HandshakeAction: Equatable {
        /// Cancel the timeout, fire the completed event, flush buffered
        /// writes, read any application data that came with the last flight.
        case completeHandshake
        /// Wait for the peer's next flight.
        case wait
        /// Cancel the timeout, fire the failed event, fail buffered writes,
        /// close the channel.
        case failHandshake(reason: String)
    }

    enum WriteAction: Equatable {
        case buffer
        case encrypt
        case failClosed
    }

    enum CloseAction: Equatable {
        /// Send close_notify, then close the channel once it is written.
        case sendCloseNotifyThenClose
        /// No session to shut down: close the channel right away.
        case closeNow
        /// A close is already under way or done.
        case alreadyClosing
    }

    enum PeerClosedAction: Equatable {
        /// The peer sent close_notify while we were active: answer with ours
        /// and close.
        case replyCloseNotifyThenClose
        /// We had sent ours already: the channel is closing.
        case none
    }

    mutating func start() -> StartAction {
        guard state == .idle else { return .none }
        state = .handshaking
        return .beginHandshake
    }

    /// Ciphertext arrived. Bytes before `start` (a server whose peer spoke
    /// first) begin the handshake; the handler calls `start` for that.
    mutating func bytesReceived() -> InboundAction {
        switch state {
        case .idle, .handshaking: return .feedAndHandshake
        case .active: return .feedAndRead
        case .closing, .closed: return .discard
        }
    }

    mutating func handshakeStepped(_ result: HandshakeResult) -> HandshakeAction {
        guard state == .handshaking else {
            preconditionFailure("handshake stepped in state \(state)")
        }
        switch result {
        case .complete:
            state = .active
            return .completeHandshake
        case .needsMoreInput:
            return .wait
        case .failed(let reason):
            state = .closed
            return .failHandshake(reason: reason)
        }
    }

    /// The handshake deadline passed.
    mutating func handshakeTimedOut(after description: String) -> HandshakeAction? {
        guard state == .idle || state == .handshaking else { return nil }
        state = .closed
        return .failHandshake(reason: "handshake did not complete within \(description)")
    }

    /// The transport went away.
    mutating func channelInactive() -> HandshakeAction? {
        let previous = state
        state = .closed
        if previous == .idle || previous == .handshaking {
            return .failHandshake(reason: "connection closed by the peer during the handshake")
        }
        return nil
    }

    func write() -> WriteAction {
        switch state {
        case .idle, .handshaking: return .buffer
        case .active: return .encrypt
        case .closing, .closed: return .failClosed
        }
    }

    mutating func close() -> CloseAction {
        switch state {
        case .idle, .handshaking:
            state = .closed
            return .closeNow
        case .active:
            state = .closing
            return .sendCloseNotifyThenClose
        case .closing, .closed:
            return .alreadyClosing
        }
    }

    mutating func peerSentCloseNotify() -> PeerClosedAction {
        switch state {
        case .active:
            state = .closing
            return .replyCloseNotifyThenClose
        case .idle, .handshaking, .closing, .closed:
            return .none
        }
    }

    /// A fatal record-layer error (bad MAC, unexpected message, buffer
    /// bound): the connection is closed without close_notify.
    mutating func recordLayerFailed() -> Bool {
        guard state != .closed else { return false }
        state = .closed
        return true
    }
}
