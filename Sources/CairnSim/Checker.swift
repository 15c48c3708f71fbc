import CairnRaft

/// The safety properties, checked after every simulator step. The first violation is kept.
///
/// Properties:
/// 1. Election Safety: at most one leader per term.
/// 2. Log Matching: two durable entries with the same index and term hold the same value
///    and follow entries of the same term (so, inductively, the logs are equal up to there).
/// 3. State Machine Safety: every applied entry equals the one every other member applied
///    at that index (the reference log); so committed entries never change.
/// 4. Applied sequences are gap-free prefixes of the reference log; a restored snapshot's
///    digest equals the reference digest at its index.
/// 5. ReadIndex reads are never stale: a read's index covers every entry known committed
///    when the read was requested, and its value is the reference value at that point.
/// 6. No member was asked to overwrite a committed entry.
/// 7. Leader Completeness: a leader of term L holds every entry that a leader of an
///    earlier term had already committed.
/// 8. Electability (Leader Completeness as a state property): a member whose durable log
///    lacks a committed entry is refused by a majority, whose durable logs are strictly
///    more up-to-date. Holds in correct Raft at every instant; a commit that breaks it
///    (Figure 8) is caught when it happens, not only if a bad election follows.
public struct Checker {
    public private(set) var violation: String?
    private var leaderOfTerm: [UInt64: NodeID] = [:]
    /// The highest commit index seen at a leader, per term.
    private var leaderCommitOfTerm: [UInt64: UInt64] = [:]
    /// (index, term) -> (value, previous term), from durable entries.
    private var durableEntries: [IndexTerm: (value: UInt64, previousTerm: UInt64?)] = [:]
    /// The reference log, index 0 a sentinel: term, value, register value and digest after it.
    private(set) var referenceTerms: [UInt64] = [0]
    private var referenceWrites: [UInt64] = [0]
    private var referenceStates: [RegisterState] = [RegisterState()]
    private var appliedIndex: [NodeID: UInt64] = [:]
    /// Terms of every entry any member has reported committed (index 0 a sentinel); may run
    /// ahead of the reference log, which only holds applied entries.
    private(set) var committedTerms: [UInt64] = [0]
    private var commitVerified: [NodeID: UInt64] = [:]
    /// For each outstanding read: the highest index known committed when it was requested.
    private var readFloors: [UInt64: UInt64] = [:]
    public private(set) var readsChecked = 0

    struct IndexTerm: Hashable {
        var index: UInt64
        var term: UInt64
    }

    public init() {}

    public var referenceLastIndex: UInt64 { UInt64(referenceTerms.count - 1) }

    mutating func fail(_ message: String) {
        if violation == nil { violation = message }
    }

    /// Properties 1 and 6, from a member's current status.
    mutating func check(status: NodeStatus, of node: NodeID, member: any SimulatedNode) {
        recordCommitted(through: status.committedIndex, of: member)
        if status.role == .leader {
            if let existing = leaderOfTerm[status.term], existing != node {
                fail("two leaders in term \(status.term): \(existing) and \(node)")
            }
            if leaderOfTerm[status.term] == nil {
                leaderOfTerm[status.term] = node
                checkLeaderCompleteness(member, term: status.term)
            }
            leaderCommitOfTerm[status.term] = max(leaderCommitOfTerm[status.term] ?? 0, status.committedIndex)
        }
        if status.committedConflicts > 0 {
            fail("node \(node) was sent entries conflicting with its committed log")
        }
    }

    /// Properties 2-5, from the effects of a member's durable batch.
    mutating func check(effects: NodeEffects, of node: NodeID) {
        for entry in effects.persisted { checkLogMatching(entry, node: node) }
        if let snapshot = effects.restoredSnapshot { checkSnapshot(snapshot, node: node) }
        for entry in effects.applied { checkApplied(entry, node: node) }
        for read in effects.reads { checkRead(read, node: node) }
    }

    mutating func nodeRestarted(_ node: NodeID, appliedIndex restoredIndex: UInt64) {
        appliedIndex[node] = restoredIndex
    }

    /// Property 3 at commit time: the entries a member reports committed agree with every
    /// other member's committed entries, index by index.
    private mutating func recordCommitted(through commit: UInt64, of member: any SimulatedNode) {
        var index = max((commitVerified[member.id] ?? 0) + 1, member.logFirstIndex)
        guard index <= commit else { return }
        while index <= commit {
            guard let term = member.logTerm(at: index) else { break }
            if index < UInt64(committedTerms.count) {
                if committedTerms[Int(index)] != term {
                    fail(
                        "committed entry changed: member \(member.id) committed \(term)/\(index), "
                            + "another committed \(committedTerms[Int(index)])/\(index)")
                    return
                }
            } else if index == UInt64(committedTerms.count) {
                committedTerms.append(term)
            }
            index += 1
        }
        commitVerified[member.id] = index - 1
    }

    /// A restarted member re-learns its commit index; its log is checked again from its start.
    mutating func forgetCommitProgress(of node: NodeID) { commitVerified[node] = nil }

    /// Property 8 over all members (crashed ones too: their durable logs vote after restart).
    mutating func checkElectability(_ members: [any SimulatedNode]) {
        let committed = UInt64(committedTerms.count - 1)
        guard committed > 0, violation == nil else { return }
        let quorum = members.count / 2 + 1
        for candidate in members {
            let term = candidate.durableTerm(at: committed)
            if term == .max || term == committedTerms[Int(committed)] { continue }
            let position = candidate.durableLastPosition
            var refusing = 0
            for voter in members where voter !== candidate {
                let other = voter.durableLastPosition
                if other.term > position.term || (other.term == position.term && other.index > position.index)
                {
                    refusing += 1
                }
            }
            if refusing < quorum {
                fail(
                    "electability: member \(candidate.id) lacks committed entry \(committedTerms[Int(committed)])/"
                        + "\(committed) yet only \(refusing) members would refuse it a vote")
                return
            }
        }
    }

    private mutating func checkLeaderCompleteness(_ leader: any SimulatedNode, term: UInt64) {
        var committed: UInt64 = 0
        for (earlierTerm, index) in leaderCommitOfTerm where earlierTerm < term {
            committed = max(committed, index)
        }
        committed = min(committed, UInt64(committedTerms.count - 1))
        guard committed > 0 else { return }
        var index = max(leader.logFirstIndex, 1)
        while index <= committed {
            if leader.logTerm(at: index) != committedTerms[Int(index)] {
                fail(
                    "leader completeness: leader \(leader.id) of term \(term) lacks committed entry "
                        + "\(committedTerms[Int(index)])/\(index)")
                return
            }
            index += 1
        }
    }

    private mutating func checkLogMatching(_ entry: NodeEffects.Persisted, node: NodeID) {
        let key = IndexTerm(index: entry.index, term: entry.term)
        guard let known = durableEntries[key] else {
            durableEntries[key] = (entry.value, entry.previousTerm)
            return
        }
        if known.value != entry.value {
            fail("log matching: node \(node) holds a different entry at \(entry.term)/\(entry.index)")
        } else if let previous = entry.previousTerm, let knownPrevious = known.previousTerm,
            previous != knownPrevious
        {
            fail(
                "log matching: node \(node) has term \(previous) before \(entry.term)/\(entry.index), others \(knownPrevious)"
            )
        }
    }

    private mutating func checkSnapshot(_ snapshot: (index: UInt64, digest: UInt64), node: NodeID) {
        guard snapshot.index <= referenceLastIndex else {
            fail("node \(node) restored a snapshot at \(snapshot.index) beyond anything applied")
            return
        }
        if referenceStates[Int(snapshot.index)].digest != snapshot.digest {
            fail(
                "node \(node) restored a snapshot at \(snapshot.index) that differs from the applied history")
        }
        appliedIndex[node] = snapshot.index
    }

    private mutating func checkApplied(_ entry: NodeEffects.Applied, node: NodeID) {
        let previous = appliedIndex[node] ?? 0
        guard entry.index == previous + 1 else {
            fail("node \(node) applied \(entry.index) after \(previous): a gap")
            return
        }
        appliedIndex[node] = entry.index
        if entry.index <= referenceLastIndex {
            let position = Int(entry.index)
            if referenceTerms[position] != entry.term || referenceWrites[position] != entry.value {
                fail(
                    "committed entry changed: node \(node) applied \(entry.term)/\(entry.index), "
                        + "another member applied \(referenceTerms[position])/\(entry.index)")
            }
        } else {
            var state = referenceStates[referenceStates.count - 1]
            state.apply(index: entry.index, term: entry.term, value: entry.value)
            referenceTerms.append(entry.term)
            referenceWrites.append(entry.value)
            referenceStates.append(state)
        }
    }

    /// Records the floor for a read requested now: everything known committed anywhere.
    mutating func readRequested(_ readID: UInt64, knownCommitted: UInt64) {
        readFloors[readID] = max(knownCommitted, referenceLastIndex)
    }

    mutating func readRefused(_ readID: UInt64) { readFloors[readID] = nil }

    private mutating func checkRead(_ read: NodeEffects.Read, node: NodeID) {
        readsChecked += 1
        if let floor = readFloors.removeValue(forKey: read.readID), read.readIndex < floor {
            fail(
                "stale read \(read.readID) at node \(node): read index \(read.readIndex) < committed \(floor)"
            )
            return
        }
        guard read.appliedIndex <= referenceLastIndex else { return }
        if referenceStates[Int(read.appliedIndex)].value != read.value {
            fail(
                "read \(read.readID) at node \(node) returned a value the history never had at \(read.appliedIndex)"
            )
        }
    }
}
