import DequeModule

/// ReadIndex requests of a leader (dissertation 6.4): each remembers the commit index at the
/// time it arrived and is released once a quorum answers a heartbeat sent after it.
///
/// Heartbeats carry an internal sequence number rather than the caller's context, so
/// callers need not make contexts unique. An acknowledgement of sequence `s` confirms every
/// request with a sequence `<= s` (the heartbeat was sent after all of them).
///
/// A request comes from the leader itself or was forwarded by a follower (`requester`),
/// which gets the confirmed index back in a `readIndexResponse`.
///
/// Invariants:
/// 1. `pending` is ordered by sequence, and so by index.
/// 2. `count <= RaftConfig.readIndexPendingMax` (checked by the caller before adding).
struct PendingReads {
    struct Request {
        var sequence: UInt64
        var index: UInt64
        var context: [UInt8]
        var requester: NodeID
        var acknowledgements: Set<NodeID>

        var readState: ReadState { ReadState(index: index, context: context) }
    }

    private(set) var pending: Deque<Request> = []
    /// Requests received before the leader committed an entry of its own term.
    private(set) var waitingForCommit: Deque<(context: [UInt8], requester: NodeID)> = []
    private var nextSequence: UInt64 = 1

    var count: Int { pending.count + waitingForCommit.count }

    var latestSequence: UInt64? { pending.last?.sequence }

    mutating func waitForCommit(context: [UInt8], requester: NodeID) {
        waitingForCommit.append((context, requester))
    }

    mutating func add(index: UInt64, context: [UInt8], requester: NodeID, leader: NodeID) -> UInt64 {
        let sequence = nextSequence
        nextSequence += 1
        pending.append(
            Request(
                sequence: sequence, index: index, context: context, requester: requester,
                acknowledgements: [leader]))
        return sequence
    }

    /// Moves requests that waited for the first commit of the term into `pending`.
    mutating func releaseWaiting(commit: UInt64, leader: NodeID) -> UInt64? {
        var last: UInt64?
        while let waiting = waitingForCommit.popFirst() {
            last = add(index: commit, context: waiting.context, requester: waiting.requester, leader: leader)
        }
        return last
    }

    /// Records that `node` answered the heartbeat carrying `sequence`; returns the requests
    /// now confirmed by a quorum of `voters`.
    mutating func acknowledge(sequence: UInt64, from node: NodeID, voters: Set<NodeID>, quorum: Int)
        -> [Request]
    {
        guard voters.contains(node) else { return [] }
        guard let position = pending.firstIndex(where: { $0.sequence == sequence }) else { return [] }
        var confirmedThrough: Int?
        for offset in 0...position {
            pending[offset].acknowledgements.insert(node)
            if pending[offset].acknowledgements.intersection(voters).count >= quorum {
                confirmedThrough = offset
            }
        }
        guard let last = confirmedThrough else { return [] }
        var released: [Request] = []
        for _ in 0...last { released.append(pending.removeFirst()) }
        return released
    }

    mutating func reset() {
        pending.removeAll()
        waitingForCommit.removeAll()
    }

    static func encode(_ sequence: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: sequence >> (8 * UInt64($0))) }
    }

    static func decode(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        var value: UInt64 = 0
        for (offset, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(offset)) }
        return value
    }
}
