import CairnRaft

/// Fault rates and tunables picked by the seed (swarm testing: each seed explores a
/// different mix, so rare combinations get full attention in some runs). Time is in
/// simulator steps; one Raft tick is `stepsPerTick` steps.
public struct SwarmParameters: Sendable, CustomStringConvertible {
    public var dropPerMille: Int
    /// Extra loss on messages to one member (the laggard), so some member is often behind:
    /// the situation where the election restriction matters.
    public var laggardDropPerMille: Int
    public var duplicatePerMille: Int
    public var messageDelayStepsMax: Int
    public var reorderPerMille: Int
    public var partitionPerMille: Int
    public var healPerMille: Int
    /// Partitions that cut off exactly the current leader (its in-flight appends are lost).
    public var leaderIsolationPerMille: Int
    public var crashPerMille: Int
    /// Crashes aimed at whoever currently leads (the classic "kill the leader" fault).
    public var leaderCrashPerMille: Int
    public var restartDelayTicksMax: Int
    public var persistDelayStepsMax: Int
    public var proposePerMille: Int
    public var readPerMille: Int
    /// Membership changes of one extra member (learner, voter, removed, again); 0 keeps
    /// the membership fixed and enables the electability checker, which assumes it.
    public var membershipChangePerMille: Int
    public var compactEveryEntries: Int
    public var messageBytesMax: Int
    public var inflightMessagesMax: Int
    public var uncommittedBytesMax: Int
    public var heartbeatIntervalTicks: Int
    public var preVote: Bool
    public var checkQuorum: Bool

    public static let stepsPerTick = 10

    /// Draws every parameter from `random` (seeded by the run's seed).
    public init(random: inout SplitMix64) {
        func pick<T>(_ choices: [T]) -> T { choices[Int(random.next() % UInt64(choices.count))] }
        dropPerMille = pick([0, 10, 50, 200])
        laggardDropPerMille = pick([0, 0, 300, 700])
        duplicatePerMille = pick([0, 10, 50])
        messageDelayStepsMax = pick([1, 5, 20, 40])
        reorderPerMille = pick([0, 10, 100])
        partitionPerMille = pick([0, 10, 30, 60])
        healPerMille = pick([10, 30, 100])
        leaderIsolationPerMille = pick([0, 10, 30])
        crashPerMille = pick([0, 2, 10])
        leaderCrashPerMille = pick([0, 5, 20])
        restartDelayTicksMax = pick([5, 20, 60])
        persistDelayStepsMax = pick([0, 3, 15])
        proposePerMille = pick([200, 600, 1000])
        readPerMille = pick([0, 200, 500])
        membershipChangePerMille = pick([0, 0, 20])
        compactEveryEntries = pick([0, 5, 20, 100])
        messageBytesMax = pick([1, 80, 1 << 20])
        inflightMessagesMax = pick([4, 64])
        uncommittedBytesMax = pick([512, 2048])
        heartbeatIntervalTicks = pick([1, 2])
        let protocolVariant = pick([0, 0, 0, 1, 2, 3])
        preVote = protocolVariant != 1 && protocolVariant != 3
        checkQuorum = protocolVariant != 2 && protocolVariant != 3
        // A removed member that missed its removal campaigns forever; without the leader
        // lease nothing stops it deposing every leader (dissertation 4.2.3), so membership
        // churn runs with CheckQuorum, as any deployment that changes membership must.
        if membershipChangePerMille > 0 { checkQuorum = true }
    }

    public var description: String {
        "drop=\(dropPerMille)‰ laggardDrop=\(laggardDropPerMille)‰ dup=\(duplicatePerMille)‰ delay≤\(messageDelayStepsMax) reorder=\(reorderPerMille)‰ "
            + "partition=\(partitionPerMille)‰ heal=\(healPerMille)‰ isolateLeader=\(leaderIsolationPerMille)‰ crash=\(crashPerMille)‰ leaderCrash=\(leaderCrashPerMille)‰ "
            + "persist≤\(persistDelayStepsMax) propose=\(proposePerMille)‰ read=\(readPerMille)‰ membership=\(membershipChangePerMille)‰ "
            + "compact=\(compactEveryEntries) msgBytes=\(messageBytesMax) inflight=\(inflightMessagesMax) uncommitted=\(uncommittedBytesMax) "
            + "heartbeat=\(heartbeatIntervalTicks) preVote=\(preVote) checkQuorum=\(checkQuorum)"
    }
}

extension SwarmParameters {
    /// The operator's next step for the extra member of a swarm run: add it
    /// as a learner, promote it, remove it, and round again. Both
    /// simulations (bare Raft and whole members) cycle it the same way.
    static func nextMembershipChange(of extra: NodeID, in membership: ConfState) -> ConfChange {
        if membership.voters.contains(extra) { return ConfChange(.remove, node: extra) }
        if membership.learners.contains(extra) { return ConfChange(.addVoter, node: extra) }
        return ConfChange(.addLearner, node: extra)
    }
}
