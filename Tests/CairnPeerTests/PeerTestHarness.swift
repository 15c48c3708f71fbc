import CairnPeer
import CairnTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What one transport's callbacks saw, recorded for assertions.
struct PeerRecord {
    var messages: [UInt64: [[UInt8]]] = [:]
    var snapshots: [PeerSnapshot] = []
    var unreachable: [UInt64: Int] = [:]
    var snapshotOutcomes: [(UInt64, PeerSnapshotOutcome)] = []
    var logs: [String] = []

    func count(from sender: UInt64) -> Int { self.messages[sender]?.count ?? 0 }
}

/// A transport on 127.0.0.1 whose callbacks record into `record`.
final class PeerNode: Sendable {
    let memberID: UInt64
    let port: Int
    let transport: PeerTransport
    let record: NIOLockedValueBox<PeerRecord>

    var url: PeerURL { PeerURL(host: "127.0.0.1", port: self.port) }

    init(
        memberID: UInt64, clusterID: UInt64 = 0xC1, port: Int? = nil, peers: [UInt64: PeerURL] = [:],
        limits: PeerLimits = PeerNode.testLimits, group: any EventLoopGroup,
        channelInitializer: PeerChannelInitializer? = nil, rejectSnapshots: Bool = false
    ) async throws {
        let record = NIOLockedValueBox(PeerRecord())
        let handlers = PeerTransportHandlers(
            messagesReceived: { from, payloads in
                record.withLockedValue { $0.messages[from, default: []].append(contentsOf: payloads) }
            },
            snapshotReceived: { snapshot in
                if rejectSnapshots { throw TestFailure("the state machine refuses this snapshot") }
                record.withLockedValue { $0.snapshots.append(snapshot) }
            },
            peerUnreachable: { memberID in
                record.withLockedValue { $0.unreachable[memberID, default: 0] += 1 }
            },
            snapshotSent: { memberID, outcome in
                record.withLockedValue { $0.snapshotOutcomes.append((memberID, outcome)) }
            },
            log: { _, message in record.withLockedValue { $0.logs.append(message) } })
        let port = port ?? TestPorts.allocate()
        let configuration = PeerTransportConfiguration(
            memberID: memberID, clusterID: clusterID, listenHost: "127.0.0.1", listenPort: port, peers: peers,
            limits: limits, backoffSeed: 42, channelInitializer: channelInitializer)
        self.memberID = memberID
        self.port = port
        self.record = record
        self.transport = try await PeerTransport.start(
            configuration: configuration, group: group, handlers: handlers)
    }

    /// Limits for tests: fast redial, generous queues.
    static var testLimits: PeerLimits {
        var limits = PeerLimits()
        limits.reconnectDelayInitial = .milliseconds(10)
        limits.reconnectDelayMax = .milliseconds(200)
        limits.queuedMessagesMax = 100_000
        return limits
    }

    func logsContain(_ text: String) -> Bool {
        self.record.withLockedValue { $0.logs.contains { $0.contains(text) } }
    }
}

/// A payload that carries its sender and sequence number, padded to a
/// size that varies with the sequence so frames of many sizes are exercised.
func numberedPayload(sender: UInt64, sequence: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    withUnsafeBytes(of: sender.littleEndian) { bytes.append(contentsOf: $0) }
    withUnsafeBytes(of: UInt64(sequence).littleEndian) { bytes.append(contentsOf: $0) }
    bytes.append(contentsOf: [UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: sequence % 300))
    return bytes
}

/// The sequence numbers in payloads made by `numberedPayload`, checking the
/// sender and padding of each.
func sequences(of payloads: [[UInt8]], sender: UInt64) -> [Int] {
    payloads.map { payload in
        guard payload.count >= 16 else { return -1 }
        let from = payload[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let sequence = Int(payload[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        let padding = payload[16...]
        guard from == sender, padding.count == sequence % 300,
            padding.allSatisfy({ $0 == UInt8(truncatingIfNeeded: sequence) })
        else { return -1 }
        return sequence
    }
}

/// Polls `condition` until it holds or `timeoutSeconds` pass (generous:
/// the machine is shared); no assertion is made on how long it took.
func eventually(timeoutSeconds: Double = 60, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(timeoutSeconds)
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw TestFailure("condition not met within \(timeoutSeconds) s")
}

/// Deterministic pseudo-random bytes for snapshot payloads.
func seededBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var bytes = [UInt8](repeating: 0, count: count)
    for index in bytes.indices {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        bytes[index] = UInt8(truncatingIfNeeded: state >> 33)
    }
    return bytes
}
