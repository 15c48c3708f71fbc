import CairnCore

/// One member as MemberList shows it: etcd's `Member` message without the
/// runtime fields. Replicated, so every member answers MemberList alike.
public struct MemberRecord: Hashable, Sendable {
    public var id: MemberID
    /// Empty until the member publishes its name (etcd shows such a member
    /// as "unstarted").
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(
        id: MemberID, name: String, peerURLs: [String], clientURLs: [String] = [], isLearner: Bool = false
    ) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

/// A membership change as the state machine applies it. Raft decides who
/// votes (`ConfChange` in CairnRaft); this records who the members are.
public enum MembershipChange: Hashable, Sendable {
    /// A voter joins (or a learner is promoted, keeping its record).
    case addVoter(MemberID)
    /// A learner joins.
    case addLearner(MemberID)
    case remove(MemberID)
}

/// The replicated member list (etcd's `membership.RaftCluster` data).
///
/// Records arrive in two ways: a membership entry carrying the record
/// (bootstrap), or a `.memberAttributes` command proposed just before the
/// Raft membership change (runtime). A record whose member is not (yet) in
/// the configuration is *staged*: it becomes a member when its change
/// applies, and is dropped by a later removal.
///
/// Properties:
/// 1. `members` holds exactly the members added and not removed, each once.
/// 2. `staged.count <= stagedMax`: beyond it the oldest staged record goes
///    (a staged record whose membership change never commits is garbage).
/// 3. Removed IDs are remembered and never come back (etcd refuses to
///    re-add a removed ID; a stale staged record cannot resurrect one).
public struct MemberList: Hashable, Sendable {
    /// Staged records kept at most; the oldest is dropped beyond it.
    public static let stagedMax = 16

    public internal(set) var members: [MemberID: MemberRecord] = [:]
    var staged: [MemberRecord] = []
    public internal(set) var removed: Set<MemberID> = []

    public init() {}

    /// Members sorted by ID (MemberList's order).
    public var sorted: [MemberRecord] { members.values.sorted { $0.id < $1.id } }

    /// A record for a member that exists, is staged, or is about to be added.
    public mutating func upsert(_ record: MemberRecord) {
        guard !removed.contains(record.id) else { return }
        if var existing = members[record.id] {
            existing.name = record.name.isEmpty ? existing.name : record.name
            existing.peerURLs = record.peerURLs
            existing.clientURLs = record.clientURLs
            members[record.id] = existing
            return
        }
        staged.removeAll { $0.id == record.id }
        staged.append(record)
        if staged.count > Self.stagedMax { staged.removeFirst() }
    }

    /// Applies a committed membership change; `record` comes with the entry
    /// (bootstrap) or from `staged`.
    public mutating func apply(_ change: MembershipChange, record: MemberRecord? = nil) {
        switch change {
        case .addVoter(let id), .addLearner(let id):
            guard !removed.contains(id) else { return }
            let isLearner: Bool
            if case .addLearner = change { isLearner = true } else { isLearner = false }
            var next =
                members[id] ?? record ?? staged.last(where: { $0.id == id })
                ?? MemberRecord(id: id, name: "", peerURLs: [])
            if let record, members[id] == nil { next = record }
            next.isLearner = isLearner
            members[id] = next
            staged.removeAll { $0.id == id }
        case .remove(let id):
            members[id] = nil
            staged.removeAll { $0.id == id }
            removed.insert(id)
        }
    }
}

extension ByteWriter {
    mutating func memberRecord(_ record: MemberRecord) {
        unsigned(record.id.rawValue)
        data(Array(record.name.utf8))
        count(record.peerURLs.count)
        for url in record.peerURLs { data(Array(url.utf8)) }
        count(record.clientURLs.count)
        for url in record.clientURLs { data(Array(url.utf8)) }
        bool(record.isLearner)
    }

    mutating func memberList(_ list: MemberList) {
        count(list.members.count)
        for record in list.sorted { memberRecord(record) }
        count(list.staged.count)
        for record in list.staged { memberRecord(record) }
        count(list.removed.count)
        for id in list.removed.sorted() { unsigned(id.rawValue) }
    }
}

extension ByteReader {
    mutating func memberRecord() throws(DecodeError) -> MemberRecord {
        let id = MemberID(try unsigned())
        let name = String(decoding: try data(), as: UTF8.self)
        var peerURLs: [String] = []
        for _ in 0..<(try count()) { peerURLs.append(String(decoding: try data(), as: UTF8.self)) }
        var clientURLs: [String] = []
        for _ in 0..<(try count()) { clientURLs.append(String(decoding: try data(), as: UTF8.self)) }
        return MemberRecord(
            id: id, name: name, peerURLs: peerURLs, clientURLs: clientURLs, isLearner: try bool())
    }

    mutating func memberList() throws(DecodeError) -> MemberList {
        var list = MemberList()
        for _ in 0..<(try count()) {
            let record = try memberRecord()
            list.apply(record.isLearner ? .addLearner(record.id) : .addVoter(record.id), record: record)
        }
        for _ in 0..<(try count()) { list.upsert(try memberRecord()) }
        for _ in 0..<(try count()) { list.removed.insert(MemberID(try unsigned())) }
        return list
    }
}

extension MemberRecord {
    /// The record's bytes, as membership entries carry it after the Raft
    /// change (see `MembershipEntry`).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.memberRecord(self)
        return writer.bytes
    }

    /// Decodes `encoded()`; malformed input is an error value.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        self = try reader.memberRecord()
        try reader.expectEnd()
    }
}

extension StateMachine {
    /// Applies a committed membership entry: the member list changes and the
    /// applied index advances (property 2 of `StateMachine`), like any entry.
    public mutating func applyMembership(
        index: UInt64, change: MembershipChange, record: MemberRecord?
    ) -> ApplyResult {
        guard index > appliedIndex else {
            return ApplyResult(index: index, response: .alreadyApplied, revision: store.currentRevision)
        }
        appliedIndex = index
        members.apply(change, record: record)
        return ApplyResult(index: index, response: .noOp, revision: store.currentRevision)
    }
}
