import CairnCore
import CairnMVCC

/// What applying one entry produced: the answer for the proposer, the
/// events for the watch hub, and effects for the shell.
public struct ApplyResult: Hashable, Sendable {
    /// The answer to hand to whoever waits under `requester`.
    public enum Response: Hashable, Sendable {
        case put(PutResponse)
        case deleteRange(DeleteRangeResponse)
        case txn(TxnResponse)
        /// The store's revision after compacting (etcd's response header).
        case compact(revision: Int64)
        case leaseGrant(id: LeaseID, ttlSeconds: Int64)
        /// The store's revision after the revoke's deletes.
        case leaseRevoke(revision: Int64)
        case leaseCheckpoint
        case noOp
        /// The alarms an `alarm` command raised or cleared (etcd's answer).
        case alarm([AlarmMember])
        /// An auth change applied; the auth store's revision after it.
        case auth(revision: UInt64)
        /// The command failed with etcd's error; nothing changed but the
        /// applied index.
        case failed(CairnError)
        /// The entry's bytes were not a command; nothing changed but the
        /// applied index. Every member sees the same bytes, so all agree.
        case undecodable(DecodeError)
        /// The index was applied before (replay after restart); nothing
        /// changed and nobody should be answered again.
        case alreadyApplied
    }

    /// Work the shell does because of this entry.
    public enum Effect: Hashable, Sendable {
        /// The store compacted at this revision: the watch hub cancels
        /// watchers below it; storage may write a snapshot.
        case compacted(revision: Int64)
        /// A lease now exists.
        case leaseGranted(LeaseID)
        /// A lease is gone (revoked or expired): end its keep-alive streams.
        case leaseRevoked(LeaseID)
        /// A login applied: every member's shell maps `token` to `user`
        /// from now on, its time-to-live kept locally (etcd's simple tokens).
        case tokenAssigned(token: String, user: String)
        /// The tokens of `user` (of every user when nil) are void: the user
        /// was deleted or its password changed, or auth was disabled.
        case tokensRevoked(user: String?)
    }

    public var index: UInt64
    /// Who waits for `response`; nil for entries that were not decoded.
    public var requester: RequestIdentity?
    public var response: Response
    /// The key-space changes, in order, for `WatchHub.applied(events:revision:)`.
    public var events: [Event]
    /// The store's current revision after this entry.
    public var revision: Int64
    public var effects: [Effect]

    public init(
        index: UInt64, requester: RequestIdentity? = nil, response: Response, events: [Event] = [],
        revision: Int64 = 0, effects: [Effect] = []
    ) {
        self.index = index
        self.requester = requester
        self.response = response
        self.events = events
        self.revision = revision
        self.effects = effects
    }
}
