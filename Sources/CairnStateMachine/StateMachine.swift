import CairnCore
import CairnMVCC

/// The replicated state of a member: the key space, the leases, and the
/// index of the last applied log entry. Every member applies the same
/// committed entries in the same order and so holds the same state.
///
/// Driven by `apply(index:entry:now:)` for each committed entry; answers with
/// an `ApplyResult` for the proposer, the watch hub and the shell. `now` only
/// sets leader-local lease expiries, never replicated state.
///
/// Properties:
/// 1. `appliedIndex` only grows; applying an index at or below it changes
///    nothing and answers `alreadyApplied` (replay after a restart is safe).
/// 2. Every applied entry, even one that fails or cannot be decoded,
///    advances `appliedIndex`: a failure is deterministic, so every member
///    fails it the same way.
/// 3. The lessor's attachments match the store's live keys (Lessor
///    property 1) after every apply.
/// 4. Two state machines that applied the same entries produce the same
///    `snapshot()` bytes.
public struct StateMachine: Sendable {
    /// A member's fixed settings.
    public struct Config: Hashable, Sendable {
        public var storeLimits: MVCCStore.Limits
        public var lessor: Lessor.Config

        public init(
            storeLimits: MVCCStore.Limits = MVCCStore.Limits(), lessor: Lessor.Config = Lessor.Config()
        ) {
            self.storeLimits = storeLimits
            self.lessor = lessor
        }
    }

    public let config: Config
    public internal(set) var store: MVCCStore
    public internal(set) var lessor: Lessor
    /// The index of the last applied log entry (etcd's consistent index).
    public internal(set) var appliedIndex: UInt64 = 0
    /// Raised alarms (replicated, kept in snapshots).
    public internal(set) var alarms = AlarmSet()
    /// Who the members are (MemberList); Raft's `ConfState` says who votes.
    public internal(set) var members = MemberList()
    /// Users, roles and permissions (replicated, kept in snapshots).
    public internal(set) var auth = AuthStore()
    var approximateSizeBytes: Int = 0

    public init(config: Config = Config()) {
        self.config = config
        self.store = MVCCStore(limits: config.storeLimits)
        self.lessor = Lessor(config: config.lessor)
    }

    /// Decodes and applies one committed entry's bytes. Empty bytes (Raft's
    /// own empty entries) answer `noOp`; undecodable bytes answer
    /// `undecodable`; both still advance the applied index (property 2).
    public mutating func apply(index: UInt64, entry: [UInt8], now: MonotonicInstant) -> ApplyResult {
        guard index > appliedIndex else {
            return ApplyResult(index: index, response: .alreadyApplied, revision: store.currentRevision)
        }
        if entry.isEmpty {
            // Raft's own empty entry (a new leader's first): nothing to do.
            appliedIndex = index
            return ApplyResult(index: index, response: .noOp, revision: store.currentRevision)
        }
        do {
            return apply(index: index, command: try Command(decoding: entry), now: now)
        } catch {
            appliedIndex = index
            return ApplyResult(index: index, response: .undecodable(error), revision: store.currentRevision)
        }
    }

    /// Applies one committed command.
    public mutating func apply(index: UInt64, command: Command, now: MonotonicInstant) -> ApplyResult {
        guard index > appliedIndex else {
            return ApplyResult(index: index, response: .alreadyApplied, revision: store.currentRevision)
        }
        appliedIndex = index
        var result = ApplyResult(index: index, requester: command.requester, response: .noOp)
        do {
            try execute(command.operation, index: index, now: now, into: &result)
        } catch {
            result.response = .failed(error)
            result.events = []
            result.effects = []
        }
        result.revision = store.currentRevision
        return result
    }

    private mutating func execute(
        _ operation: Command.Operation, index: UInt64, now: MonotonicInstant, into result: inout ApplyResult
    ) throws(CairnError) {
        let lessor = self.lessor
        let isGranted: (LeaseID) -> Bool = { lessor.isGranted($0) }
        switch operation {
        case .put(let request):
            let outcome = try store.put(request, isLeaseGranted: isGranted)
            record(outcome.events, into: &result)
            result.response = .put(outcome.response)
        case .deleteRange(let request):
            let outcome = try store.deleteRange(request)
            record(outcome.events, into: &result)
            result.response = .deleteRange(outcome.response)
        case .txn(let request):
            let outcome = try store.txn(request, isLeaseGranted: isGranted)
            record(outcome.events, into: &result)
            result.response = .txn(outcome.response)
        case .compact(let revision):
            try store.compact(revision)
            approximateSizeBytes = Self.approximateSize(of: store.exportState())
            result.response = .compact(revision: store.currentRevision)
            result.effects = [.compacted(revision: revision)]
        case .leaseGrant(let id, let ttlSeconds):
            let granted = try self.lessor.grant(id: id, ttlSeconds: ttlSeconds, index: index, now: now)
            result.response = .leaseGrant(id: granted.id, ttlSeconds: granted.ttlSeconds)
            result.effects = [.leaseGranted(granted.id)]
        case .leaseRevoke(let id):
            try revoke(id, into: &result)
        case .leaseCheckpoint(let checkpoints):
            self.lessor.checkpoint(checkpoints, now: now)
            result.response = .leaseCheckpoint
        case .noOp:
            result.response = .noOp
        case .alarm(let change):
            result.response = .alarm(try applyAlarm(change))
        case .memberAttributes(let record):
            members.upsert(record)
            result.response = .noOp
        case .auth(let operation):
            result.response = .auth(revision: try auth.apply(operation))
            result.effects = Self.tokenEffects(of: operation)
        }
    }

    /// What an applied auth operation means for the members' simple tokens.
    static func tokenEffects(of operation: AuthOperation) -> [ApplyResult.Effect] {
        switch operation {
        case .authenticate(let user, let token, _): [.tokenAssigned(token: token, user: user)]
        case .userDelete(let name), .userChangePassword(let name, _): [.tokensRevoked(user: name)]
        case .disable: [.tokensRevoked(user: nil)]
        default: []
        }
    }

    /// etcd's revoke: every attached key deleted in one revision, then the
    /// lease forgotten.
    private mutating func revoke(_ id: LeaseID, into result: inout ApplyResult) throws(CairnError) {
        let keys = try lessor.keysToRevoke(id)
        let outcome = store.deleteKeys(keys)
        record(outcome.events, into: &result)
        lessor.remove(id)
        result.response = .leaseRevoke(revision: store.currentRevision)
        result.effects = [.leaseRevoked(id)]
    }

    /// Hands a write's events to the lessor and the result, and counts
    /// the bytes they add to the store.
    private mutating func record(_ events: [Event], into result: inout ApplyResult) {
        lessor.track(events)
        for event in events {
            approximateSizeBytes +=
                Self.versionOverheadBytes + event.keyValue.key.bytes.count
                + event.keyValue.value.count
        }
        result.events = events
    }
}
