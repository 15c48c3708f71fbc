import CairnRaft

/// Linearizable reads of one member, batched: every read queued while a ReadIndex round
/// is in flight waits for the next round, and one round serves them all.
///
/// A read's lifecycle: queued -> in a round -> confirmed (read index known) -> answered
/// once applied. A round whose answer is lost is abandoned after a timeout and its reads
/// queue again at the front (a later read index is still correct for them).
///
/// Contexts are unique across restarts: a nonce drawn from the seed (new per process) comes
/// before the round's sequence, so a late answer to a previous incarnation's round can never
/// confirm a new round with an old (stale) read index.
///
/// Invariants:
/// 1. A read is in exactly one of `queued`, `round`, `confirmed`.
/// 2. `confirmed` is ordered by read index (rounds are confirmed in order; a late answer
///    of an abandoned round is ignored).
struct ReadBatcher {
    struct Round {
        var sequence: UInt64
        var readIDs: [UInt64]
        var startedTick: Int
    }

    var queued: [UInt64] = []
    private(set) var round: Round?
    private(set) var confirmed: [(index: UInt64, readIDs: [UInt64])] = []
    private var nextSequence: UInt64 = 1
    private let nonce: UInt64

    init(nonce: UInt64) { self.nonce = nonce }

    var roundInFlight: Bool { round != nil }

    var count: Int {
        queued.count + (round?.readIDs.count ?? 0) + confirmed.reduce(0) { $0 + $1.readIDs.count }
    }

    /// Moves every queued read into a new round; returns the round's ReadIndex context.
    mutating func beginRound(now tick: Int) -> [UInt8] {
        precondition(round == nil, "a ReadIndex round is already in flight")
        let sequence = nextSequence
        nextSequence += 1
        round = Round(sequence: sequence, readIDs: Array(queued), startedTick: tick)
        queued.removeAll()
        return context(sequence)
    }

    /// The round could not start (not leader): its reads fail.
    mutating func failRound() -> [UInt64] {
        let failed = round?.readIDs ?? []
        round = nil
        return failed
    }

    func roundExpired(now tick: Int, timeoutTicks: Int) -> Bool {
        guard let round else { return false }
        return tick - round.startedTick >= timeoutTicks
    }

    /// Gives up waiting for the round's answer: its reads go first in the queue.
    mutating func abandonRound() {
        guard let round else { return }
        queued.insert(contentsOf: round.readIDs, at: 0)
        self.round = nil
    }

    /// A confirmed read point from Raft; true when it answered the round in flight.
    mutating func confirm(_ readState: ReadState) -> Bool {
        guard let round, readState.context == context(round.sequence) else { return false }
        confirmed.append((readState.index, round.readIDs))
        self.round = nil
        return true
    }

    /// Reads whose read index is applied, in order.
    mutating func ready(appliedIndex: UInt64) -> [(readID: UInt64, index: UInt64)] {
        var ready: [(readID: UInt64, index: UInt64)] = []
        while let first = confirmed.first, first.index <= appliedIndex {
            confirmed.removeFirst()
            for readID in first.readIDs { ready.append((readID, first.index)) }
        }
        return ready
    }

    /// Every read not yet answered (the member stopped).
    mutating func drainAll() -> [UInt64] {
        var all = Array(queued)
        all += round?.readIDs ?? []
        for batch in confirmed { all += batch.readIDs }
        queued.removeAll()
        round = nil
        confirmed.removeAll()
        return all
    }

    func context(_ sequence: UInt64) -> [UInt8] {
        (0..<16).map { UInt8(truncatingIfNeeded: ($0 < 8 ? nonce : sequence) >> (8 * UInt64($0 % 8))) }
    }
}
