import CairnCore
import CairnRaft
import CairnStateMachine

/// The data of a Raft membership entry: the change (Raft's nine bytes) optionally followed
/// by the member's record. Bootstrap entries carry the record; runtime changes stage it
/// first with a `.memberAttributes` command (RaftNode encodes its own change entries).
public struct MembershipEntry: Sendable, Hashable {
    public var change: ConfChange
    public var record: MemberRecord?

    public init(change: ConfChange, record: MemberRecord? = nil) {
        self.change = change
        self.record = record
    }

    public func encoded() -> [UInt8] { change.encoded() + (record?.encoded() ?? []) }

    /// Nil for malformed data (it came off a disk or a network).
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= 9, let change = ConfChange(decoding: Array(bytes[0..<9])) else { return nil }
        self.change = change
        if bytes.count > 9 {
            guard let record = try? MemberRecord(decoding: Array(bytes[9...])),
                record.id.rawValue == change.node
            else { return nil }
            self.record = record
        }
    }

    /// The state machine's view of the change.
    public var membershipChange: MembershipChange {
        let id = MemberID(change.node)
        switch change.kind {
        case .addVoter: return .addVoter(id)
        case .addLearner: return .addLearner(id)
        case .remove: return .remove(id)
        }
    }
}

/// MemberAdd, MemberPromote, MemberRemove, MemberUpdate: leader only (the shell forwards
/// them). Add, promote and remove answer `.membership(list)` once the change is applied;
/// update answers `.applied` once its record is.
extension Replica {
    /// Stages `record` (one entry), then proposes the Raft change (a second entry): the
    /// record is applied before the change that makes it a member, so a committed change
    /// always finds its record.
    public func addMember(_ record: MemberRecord, requestID: UInt64) throws(ReplicaError) {
        try checkMembershipRequest(requestID)
        let list = stateMachine.members
        if list.removed.contains(record.id) { throw .memberRemoved }
        if list.members[record.id] != nil { throw .memberExists }
        let urls = Set(record.peerURLs)
        if list.members.values.contains(where: { !urls.isDisjoint(with: $0.peerURLs) }) {
            throw .peerURLExists
        }
        let command = Command(
            requester: RequestIdentity(member: memberID, id: nextInternalID()),
            operation: .memberAttributes(record))
        try proposeRaft(command.encoded())
        try proposeChange(
            ConfChange(record.isLearner ? .addLearner : .addVoter, node: record.id.rawValue), requestID)
    }

    /// Makes a learner a voter once it has nearly caught up with the leader's log (etcd:
    /// match at least 90% of the leader's last index).
    public func promoteMember(_ id: MemberID, requestID: UInt64) throws(ReplicaError) {
        try checkMembershipRequest(requestID)
        guard let record = stateMachine.members.members[id] else { throw .memberNotFound }
        guard record.isLearner else { throw .memberNotLearner }
        guard let progress = raft.progress(of: id.rawValue),
            Double(progress.match) >= Double(raft.lastIndex) * 0.9
        else { throw .learnerNotReady }
        try proposeChange(ConfChange(.addVoter, node: id.rawValue), requestID)
    }

    public func removeMember(_ id: MemberID, requestID: UInt64) throws(ReplicaError) {
        try checkMembershipRequest(requestID)
        guard stateMachine.members.members[id] != nil else {
            throw stateMachine.members.removed.contains(id) ? .memberRemoved : .memberNotFound
        }
        try proposeChange(ConfChange(.remove, node: id.rawValue), requestID)
    }

    /// New peer URLs (MemberUpdate) or a member publishing its name and client URLs.
    public func updateMember(_ record: MemberRecord, requestID: UInt64) throws(ReplicaError) {
        precondition(requestID < Self.internalRequestIDBase, "request IDs above 2^63 are the replica's own")
        try checkRunning()
        guard stateMachine.members.members[record.id] != nil else { throw .memberNotFound }
        try propose(.memberAttributes(record), requestID: requestID)
    }

    private func checkMembershipRequest(_ requestID: UInt64) throws(ReplicaError) {
        precondition(requestID < Self.internalRequestIDBase, "request IDs above 2^63 are the replica's own")
        try checkRunning()
        guard raft.role == .leader else { throw .notLeader(leader: leader) }
        if pendingMembership != nil { throw .raft(.confChangePending) }
    }

    private func proposeChange(_ change: ConfChange, _ requestID: UInt64) throws(ReplicaError) {
        do throws(RaftError) {
            try raft.proposeConfChange(change)
        } catch {
            throw Self.mapped(error)
        }
        pendingMembership = (requestID, change)
    }

    func nextInternalID() -> UInt64 {
        let id = nextInternalRequestID
        nextInternalRequestID &+= 1
        if nextInternalRequestID == 0 { nextInternalRequestID = Self.internalRequestIDBase }
        return id
    }
}
