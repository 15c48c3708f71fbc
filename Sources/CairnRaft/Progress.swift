import DequeModule

/// The leader's view of one follower's log, driving flow control.
///
/// States (etcd's terms):
/// - `probe`: we do not know where the follower's log matches; send one append per
///   heartbeat interval and wait for its answer.
/// - `replicate`: the follower matches; stream appends optimistically, at most
///   `inflightMessagesMax` unacknowledged at once.
/// - `snapshot`: the follower needs a snapshot; send nothing else until it is acknowledged
///   or `snapshotTimeoutTicks` pass.
///
/// Invariants:
/// 1. `match < next`.
/// 2. In `replicate`, `inflight` holds the last index of each unacknowledged append, in
///    increasing order, and never more than `inflightMessagesMax` of them.
struct Progress {
    enum State: Sendable, Hashable {
        case probe
        case replicate
        case snapshot(pendingIndex: UInt64, ticks: Int)
    }

    var match: UInt64 = 0
    var next: UInt64
    var state: State = .probe
    /// In `probe`, an append was sent and is unanswered: wait (until the next heartbeat).
    var probeSent = false
    /// Heard from within the current election timeout (CheckQuorum).
    var recentActive = false
    var isLearner: Bool
    var inflight: Deque<UInt64> = []

    init(next: UInt64, isLearner: Bool) {
        self.next = next
        self.isLearner = isLearner
    }

    func isPaused(inflightMessagesMax: Int) -> Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflight.count >= inflightMessagesMax
        case .snapshot: return true
        }
    }

    mutating func becomeProbe() {
        if case .snapshot(let pending, _) = state {
            next = max(match + 1, pending + 1)
        } else {
            next = match + 1
        }
        state = .probe
        probeSent = false
        inflight.removeAll()
    }

    mutating func becomeReplicate() {
        state = .replicate
        probeSent = false
        next = match + 1
        inflight.removeAll()
    }

    mutating func becomeSnapshot(index: UInt64) {
        state = .snapshot(pendingIndex: index, ticks: 0)
        probeSent = false
        inflight.removeAll()
    }

    /// An append covering up to `lastIndex` was sent.
    mutating func sentAppend(lastIndex: UInt64, entryCount: Int) {
        switch state {
        case .replicate:
            if entryCount > 0 {
                next = lastIndex + 1
                inflight.append(lastIndex)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            preconditionFailure("append sent to a follower in snapshot state")
        }
    }

    /// An accepted append response for `index`. Returns false if it told us nothing new.
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if index > match {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        while let first = inflight.first, first <= index { inflight.removeFirst() }
        return updated
    }

    /// A rejection of the append at `rejected`; `hint` is where the follower (and our term
    /// comparison) suggests probing next. Returns false for stale rejections.
    mutating func maybeDecrease(rejected: UInt64, hint: UInt64) -> Bool {
        if state == .replicate {
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        if next - 1 != rejected { return false }
        next = max(min(rejected, hint + 1), match + 1)
        probeSent = false
        return true
    }
}

/// Who votes, who learns, and where each stands. Quorum decisions are made here.
///
/// Invariants:
/// 1. `voters` and `learners` are disjoint; `progress` has exactly their union as keys.
struct ProgressTracker {
    private(set) var voters: Set<NodeID>
    private(set) var learners: Set<NodeID>
    var progress: [NodeID: Progress] = [:]
    /// Votes received in the current (pre-)campaign.
    var votes: [NodeID: Bool] = [:]

    init(confState: ConfState, next: UInt64) {
        voters = confState.voters
        learners = confState.learners.subtracting(confState.voters)
        for id in voters { progress[id] = Progress(next: next, isLearner: false) }
        for id in learners { progress[id] = Progress(next: next, isLearner: true) }
    }

    var confState: ConfState { ConfState(voters: voters, learners: learners) }

    var quorum: Int { voters.count / 2 + 1 }

    /// The largest index replicated on a majority of voters.
    func committedIndex() -> UInt64 {
        if voters.isEmpty { return 0 }
        var matches: [UInt64] = []
        matches.reserveCapacity(voters.count)
        for id in voters { matches.append(progress[id]?.match ?? 0) }
        matches.sort(by: >)
        return matches[quorum - 1]
    }

    enum VoteResult { case pending, won, lost }

    func tallyVotes() -> VoteResult {
        var granted = 0
        var rejected = 0
        for id in voters {
            switch votes[id] {
            case true?: granted += 1
            case false?: rejected += 1
            case nil: break
            }
        }
        if granted >= quorum { return .won }
        if rejected > voters.count - quorum { return .lost }
        return .pending
    }

    /// CheckQuorum: did a majority of voters (counting `selfID`) speak to us recently?
    func quorumActive(selfID: NodeID) -> Bool {
        var active = 0
        for id in voters where id == selfID || progress[id]?.recentActive == true { active += 1 }
        return active >= quorum
    }

    mutating func apply(_ change: ConfChange, next: UInt64) {
        switch change.kind {
        case .addVoter:
            learners.remove(change.node)
            voters.insert(change.node)
            if progress[change.node] == nil {
                progress[change.node] = Progress(next: next, isLearner: false)
            }
            progress[change.node]?.isLearner = false
        case .addLearner:
            voters.remove(change.node)
            learners.insert(change.node)
            if progress[change.node] == nil {
                progress[change.node] = Progress(next: next, isLearner: true)
            }
            progress[change.node]?.isLearner = true
        case .remove:
            voters.remove(change.node)
            learners.remove(change.node)
            progress[change.node] = nil
        }
    }
}
