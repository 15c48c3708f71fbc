import NIOCore

/// A member's peer address as etcd writes it (`http://host:port`, or
/// `https://…` when the TLS layer is installed through
/// `PeerTransportConfiguration.channelInitializer`). Parsed once, so a bad
/// URL is an error when it is configured, not a failed dial later.
public struct PeerURL: Sendable, Hashable, CustomStringConvertible {
    /// The URL scheme; `https` only records intent, the TLS handler comes
    /// from the channel initializer.
    public enum Scheme: String, Sendable {
        case http
        case https
    }

    public var scheme: Scheme
    /// A host name or IP literal (IPv6 without its brackets).
    public var host: String
    public var port: Int

    public init(scheme: Scheme = .http, host: String, port: Int) {
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// Parses `scheme://host:port` with an optional trailing `/`; anything
    /// else (paths, user info, a missing port) is an error.
    public init(parsing text: String) throws(PeerURLError) {
        guard let separator = text.firstRange(of: "://") else { throw PeerURLError(text, "missing scheme") }
        guard let scheme = Scheme(rawValue: String(text[..<separator.lowerBound]).lowercased()) else {
            throw PeerURLError(text, "scheme must be http or https")
        }
        var authority = text[separator.upperBound...]
        if authority.hasSuffix("/") { authority = authority.dropLast() }
        guard !authority.contains("/"), !authority.contains("@") else {
            throw PeerURLError(text, "a peer URL has no path or user info")
        }
        let host: Substring
        let portText: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]"), authority[close...].hasPrefix("]:") else {
                throw PeerURLError(text, "malformed IPv6 address")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            portText = authority[authority.index(close, offsetBy: 2)...]
        } else {
            guard let colon = authority.lastIndex(of: ":") else { throw PeerURLError(text, "missing port") }
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        }
        guard !host.isEmpty else { throw PeerURLError(text, "missing host") }
        guard let port = Int(portText), (1...65_535).contains(port) else {
            throw PeerURLError(text, "port must be 1…65535")
        }
        self.init(scheme: scheme, host: String(host), port: port)
    }

    public var description: String {
        let shownHost = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "\(self.scheme.rawValue)://\(shownHost):\(self.port)"
    }
}

/// A peer URL that does not parse; says which and why.
public struct PeerURLError: Error, Equatable, CustomStringConvertible {
    public var url: String
    public var problem: String

    init(_ url: String, _ problem: String) {
        self.url = url
        self.problem = problem
    }

    public var description: String { "invalid peer URL \"\(self.url)\": \(self.problem)" }
}

/// The bounds of the transport. Every queue and buffer is bounded here; the
/// behaviour at each bound is stated beside it.
public struct PeerLimits: Sendable {
    /// Messages queued for one peer. At the bound a new message is dropped,
    /// counted, and the peer reported unreachable (Raft retransmits).
    public var queuedMessagesMax = 4_096
    /// Payload bytes queued for one peer; same behaviour as above.
    public var queuedBytesMax = 64 << 20
    /// One message payload. A bigger one is dropped by the sender and, if a
    /// peer sends one anyway, its connection is closed.
    public var messageBytesMax = 16 << 20
    /// A whole snapshot the receiver accepts; a bigger one is refused before
    /// any of its data is buffered.
    public var snapshotBytesMax = 4 << 30
    /// A snapshot's metadata (the encoded Raft snapshot header).
    public var snapshotMetadataBytesMax = 4 << 20
    /// Bytes of snapshot data per chunk frame. Receivers accept chunks up to
    /// this size too, so members of one cluster should agree on it.
    public var snapshotChunkBytes = 1 << 20
    /// A dial that takes longer fails and is retried after a backoff.
    public var connectTimeout: TimeAmount = .seconds(5)
    /// Time to exchange hello/accepted before a connection is dropped.
    public var handshakeTimeout: TimeAmount = .seconds(5)
    /// First and largest reconnect delay (jittered, see `PeerBackoff`).
    public var reconnectDelayInitial: TimeAmount = .milliseconds(50)
    public var reconnectDelayMax: TimeAmount = .seconds(2)
    /// A snapshot send that has not been acknowledged by then fails; a
    /// receiver drops a snapshot connection that has not finished by then,
    /// so a stalled sender cannot pin up to `snapshotBytesMax` of memory.
    public var snapshotSendTimeout: TimeAmount = .minutes(10)
    /// Accepted connections open at once (peers redial after a drop, so
    /// each needs about one message connection plus one per snapshot).
    /// Beyond it a new connection is closed at once.
    public var inboundConnectionsMax = 256

    public init() {}

    /// The largest frame a receiver buffers: anything longer closes the connection.
    var frameBytesMax: Int {
        max(
            self.messageBytesMax,
            self.snapshotChunkBytes + PeerWire.chunkOverheadBytes,
            self.snapshotMetadataBytesMax + PeerWire.snapshotHeaderOverheadBytes,
            PeerWire.helloBodyBytes, 4_096) + 1
    }
}

/// Which end of a connection a channel is, handed to the channel
/// initializer so a TLS layer knows whether to act as client or server and
/// which name to verify.
public enum PeerChannelSide: Sendable {
    /// We dialled `memberID` at `url` (a message or snapshot connection).
    case dialling(memberID: UInt64, url: PeerURL)
    /// A peer dialled us; its member ID is known only after its hello.
    case accepted
}

/// Installs handlers at the front of a new peer channel's pipeline, before
/// the framing handlers; called on the channel's event loop, so it should use
/// `channel.pipeline.syncOperations`. This is where CairnTLS plugs in
/// without changes to this module.
public typealias PeerChannelInitializer =
    @Sendable (_ channel: any Channel, _ side: PeerChannelSide) throws -> Void

/// How loud a log line is; the shell maps it onto its logger.
public enum PeerLogLevel: Int, Sendable, Comparable {
    case debug
    case info
    case warning
    case error

    public static func < (lhs: PeerLogLevel, rhs: PeerLogLevel) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Everything a transport needs to know at start. Peers change later through
/// `PeerTransport.setPeer` and `removePeer`.
public struct PeerTransportConfiguration: Sendable {
    /// This member's ID; receivers check it, and hellos carry it.
    public var memberID: UInt64
    /// Connections from another cluster are refused.
    public var clusterID: UInt64
    /// The address to listen on for peers (`--listen-peer-urls`); port 0 picks one.
    public var listenHost: String
    public var listenPort: Int
    /// The other members' peer URLs (never this member's own).
    public var peers: [UInt64: PeerURL]
    public var limits: PeerLimits
    /// Seeds the reconnect jitter (mixed with each peer's ID).
    public var backoffSeed: UInt64
    /// Front-of-pipeline handlers for every channel (TLS); `nil` is plaintext.
    public var channelInitializer: PeerChannelInitializer?

    public init(
        memberID: UInt64, clusterID: UInt64, listenHost: String, listenPort: Int,
        peers: [UInt64: PeerURL] = [:],
        limits: PeerLimits = .init(), backoffSeed: UInt64 = 0,
        channelInitializer: PeerChannelInitializer? = nil
    ) {
        self.memberID = memberID
        self.clusterID = clusterID
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.peers = peers
        self.limits = limits
        self.backoffSeed = backoffSeed
        self.channelInitializer = channelInitializer
    }
}

/// A snapshot received whole from a peer.
public struct PeerSnapshot: Sendable {
    /// The sending member.
    public var from: UInt64
    /// Opaque metadata (the shell puts the encoded Raft snapshot message here).
    public var metadata: [UInt8]
    /// The snapshot data, checked against the sender's checksum and length.
    public var data: [UInt8]
}

/// How a snapshot send ended, reported through `snapshotSent`.
public enum PeerSnapshotOutcome: Sendable, Equatable {
    /// The receiver got it intact and acknowledged it.
    case delivered
    /// It was not delivered; `reason` says why (for logs).
    case failed(reason: String)
}

/// What `send` did with a message. Never blocks; anything but `queued`
/// means the message is gone (Raft tolerates loss) and was counted.
public enum PeerSendOutcome: Sendable, Equatable {
    case queued
    /// The peer's queue is at `queuedMessagesMax` or `queuedBytesMax`.
    case droppedQueueFull
    /// Payload above `messageBytesMax`.
    case droppedTooLarge
    /// No peer with that member ID is configured.
    case droppedUnknownPeer
    /// The transport is shut down.
    case droppedShutDown
}

/// The callbacks through which the transport reports to the member shell.
/// All are called on NIO event loops and must not block: hand the work to
/// the member's executor.
public struct PeerTransportHandlers: Sendable {
    /// Payloads from one sender, in the order it sent them; one call per
    /// read burst so the shell hops to its executor once per batch.
    public var messagesReceived: @Sendable (_ from: UInt64, _ payloads: [[UInt8]]) -> Void
    /// A complete, checked snapshot. It is acknowledged to the sender when
    /// this returns; throwing refuses it (the sender reports failure).
    public var snapshotReceived: @Sendable (_ snapshot: PeerSnapshot) throws -> Void
    /// The peer could not be reached (dial failed, connection lost or
    /// refused, or its queue is full): feed Raft's `reportUnreachable`.
    public var peerUnreachable: @Sendable (_ memberID: UInt64) -> Void
    /// A snapshot send finished: feed Raft's `reportSnapshot`.
    public var snapshotSent: @Sendable (_ memberID: UInt64, _ outcome: PeerSnapshotOutcome) -> Void
    /// Log lines (sizes and IDs, never payloads).
    public var log: @Sendable (_ level: PeerLogLevel, _ message: String) -> Void

    public init(
        messagesReceived: @escaping @Sendable (_ from: UInt64, _ payloads: [[UInt8]]) -> Void,
        snapshotReceived: @escaping @Sendable (_ snapshot: PeerSnapshot) throws -> Void,
        peerUnreachable: @escaping @Sendable (_ memberID: UInt64) -> Void = { _ in },
        snapshotSent: @escaping @Sendable (_ memberID: UInt64, _ outcome: PeerSnapshotOutcome) -> Void = {
            _, _ in
        },
        log: @escaping @Sendable (_ level: PeerLogLevel, _ message: String) -> Void = { _, _ in }
    ) {
        self.messagesReceived = messagesReceived
        self.snapshotReceived = snapshotReceived
        self.peerUnreachable = peerUnreachable
        self.snapshotSent = snapshotSent
        self.log = log
    }
}

/// Counters of one peer's outbound side, for metrics and tests.
public struct PeerStatistics: Sendable, Equatable {
    /// A message connection is up and accepted.
    public var connected: Bool
    /// Message connections established (accepted by the peer) so far.
    public var connectionsEstablished: Int
    /// Messages written to the peer's connection.
    public var messagesSent: Int
    /// Messages dropped: queue full, too large, or discarded at removal/shutdown.
    public var messagesDropped: Int
    public var queuedMessages: Int
    public var queuedBytes: Int
}

/// Formats a member ID as etcd does (lowercase hex), for log lines.
func memberIDText(_ id: UInt64) -> String {
    String(id, radix: 16)
}
