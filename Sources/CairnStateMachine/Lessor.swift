import CairnCore
import CairnMVCC

/// A point on the member's monotonic clock, in milliseconds since an
/// arbitrary origin. The shell reads the clock and passes instants in; the
/// core never reads one, so tests and the simulator choose time.
public struct MonotonicInstant: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func < (lhs: MonotonicInstant, rhs: MonotonicInstant) -> Bool {
        lhs.milliseconds < rhs.milliseconds
    }

    /// This instant moved later by `milliseconds`, saturating instead of overflowing.
    public func adding(milliseconds delta: Int64) -> MonotonicInstant {
        let (sum, overflow) = milliseconds.addingReportingOverflow(delta)
        return MonotonicInstant(milliseconds: overflow ? (delta > 0 ? .max : .min) : sum)
    }

    /// Milliseconds from this instant to `later` (negative if earlier),
    /// saturating instead of overflowing.
    public func milliseconds(until later: MonotonicInstant) -> Int64 {
        let (difference, overflow) = later.milliseconds.subtractingReportingOverflow(milliseconds)
        return overflow ? (later.milliseconds > milliseconds ? .max : .min) : difference
    }

    public var description: String { "\(milliseconds)ms" }
}

/// etcd's lessor: leases, the keys attached to them, and (on the leader
/// only) their expiry.
///
/// Two kinds of state live here, and the split is what makes leases safe
/// under Raft:
/// - Replicated (changed only by applied commands, identical on every
///   member, part of snapshots): each lease's ID, granted TTL, checkpointed
///   remaining TTL, and attached keys.
/// - Local to the leader (never in snapshots): expiry instants, pending
///   revoke proposals, checkpoint schedule. Only a `primary` lessor has
///   expiries; expiry yields revoke *proposals* (`expired(now:)`), which
///   reach every member through the log.
///
/// Properties:
/// 1. `keyLeases[k] == id` exactly when `leases[id].keys` contains `k`, and
///    then `k` is live in the store with lease `id`.
/// 2. Every lease's `ttlSeconds` is within [`leaseTTLMinSeconds`,
///    `leaseTTLMaxSeconds`]; `leases.count <= leasesMax`; no lease has ID 0.
/// 3. `expiry` is non-nil exactly when the state is `primary`.
/// 4. Keys per lease are unbounded, as in etcd: a revoke deletes them all in
///    one revision, so its cost grows with the keys attached.
public struct Lessor: Sendable {
    /// Bounds and clock rules, fixed per member.
    public struct Config: Hashable, Sendable {
        /// etcd's `minLeaseTTL`: shorter grants are raised to this. etcd
        /// computes ceil(1.5 × election timeout) in seconds; with its defaults
        /// (heartbeat 100 ms, election 1000 ms) that is ceil(1.5 s) = 2 s.
        public var leaseTTLMinSeconds: Int64
        /// etcd's `MaxLeaseTTL` (9,000,000,000 s); longer grants fail with
        /// "etcdserver: too large lease TTL".
        public var leaseTTLMaxSeconds: Int64
        /// Leases that may exist at once; a grant beyond fails with
        /// `tooManyRequests`. etcd has no such bound.
        public var leasesMax: Int
        /// etcd's `--lease-checkpoint-interval` (default 5 minutes).
        public var checkpointIntervalSeconds: Int64
        /// etcd's `maxLeaseCheckpointBatchSize`: checkpoints per proposal.
        public var checkpointsPerProposalMax: Int
        /// Revoke proposals handed out per `expired(now:)` call (etcd revokes
        /// at most 1000 leases a second, checking every 500 ms).
        public var expiredLeasesPerCallMax: Int
        /// etcd's `expiredLeaseRetryInterval`: how long a proposed revoke may
        /// stay unapplied before the lease is proposed again.
        public var revokeRetryMilliseconds: Int64
        /// Seeds generated lease IDs; every member must use the same seed
        /// (the cluster ID is a good one) so they generate the same IDs.
        public var idSeed: UInt64

        public init(
            leaseTTLMinSeconds: Int64 = 2, leaseTTLMaxSeconds: Int64 = 9_000_000_000,
            leasesMax: Int = 1_000_000,
            checkpointIntervalSeconds: Int64 = 300, checkpointsPerProposalMax: Int = 1000,
            expiredLeasesPerCallMax: Int = 500, revokeRetryMilliseconds: Int64 = 3000, idSeed: UInt64 = 0
        ) {
            self.leaseTTLMinSeconds = leaseTTLMinSeconds
            self.leaseTTLMaxSeconds = leaseTTLMaxSeconds
            self.leasesMax = leasesMax
            self.checkpointIntervalSeconds = checkpointIntervalSeconds
            self.checkpointsPerProposalMax = checkpointsPerProposalMax
            self.expiredLeasesPerCallMax = expiredLeasesPerCallMax
            self.revokeRetryMilliseconds = revokeRetryMilliseconds
            self.idSeed = idSeed
        }
    }

    /// Whether this member's lessor keeps live expiries (etcd's primary,
    /// held by the leader).
    public enum State: Hashable, Sendable {
        case primary
        case secondary
    }

    /// One lease. `remainingTTLSeconds` is the last checkpointed remaining
    /// TTL (0: none since grant or renewal).
    struct Lease: Sendable {
        var id: LeaseID
        var ttlSeconds: Int64
        var remainingTTLSeconds: Int64 = 0
        var keys: Set<Key> = []
        var expiry: MonotonicInstant?
        var revokeProposedAt: MonotonicInstant?
        var nextCheckpointAt: MonotonicInstant?

        /// The TTL a new leader restarts the lease with.
        var effectiveTTLSeconds: Int64 { remainingTTLSeconds > 0 ? remainingTTLSeconds : ttlSeconds }
    }

    /// What `timeToLive` reports.
    public struct LeaseStatus: Hashable, Sendable {
        public var id: LeaseID
        /// The TTL granted (after the minimum rule).
        public var grantedTTLSeconds: Int64
        /// Seconds left, rounded down, at least 0. On a secondary, which
        /// has no expiry, the TTL a new leader would restart the lease with.
        public var remainingTTLSeconds: Int64
        /// The attached keys in key order, when asked for.
        public var keys: [Key]
    }

    public let config: Config
    public internal(set) var state: State = .secondary
    var leases: [LeaseID: Lease] = [:]
    var keyLeases: [Key: LeaseID] = [:]

    public init(config: Config = Config()) {
        self.config = config
    }

    /// How many leases exist.
    public var count: Int { leases.count }

    /// Whether the lease exists (the predicate CairnMVCC's writes ask).
    public func isGranted(_ id: LeaseID) -> Bool { leases[id] != nil }

    /// Every lease ID, in increasing order (etcd's LeaseLeases).
    public func leaseIDs() -> [LeaseID] { leases.keys.sorted() }

    /// The lease a key is attached to, if any.
    public func lease(of key: Key) -> LeaseID? { keyLeases[key] }
}

// MARK: replicated changes (called only while applying commands)

extension Lessor {
    /// etcd's Grant: the ID must be new, the TTL within the maximum; a TTL
    /// under the minimum is raised to it. `id` 0 generates an ID from the
    /// seed and `index`, the same on every member. Returns the ID and TTL.
    mutating func grant(
        id requested: LeaseID, ttlSeconds: Int64, index: UInt64, now: MonotonicInstant
    ) throws(CairnError) -> (id: LeaseID, ttlSeconds: Int64) {
        if ttlSeconds > config.leaseTTLMaxSeconds { throw .leaseTTLTooLarge }
        if requested != .none && leases[requested] != nil { throw .leaseExists }
        if leases.count >= config.leasesMax { throw .tooManyRequests }
        let id = requested == .none ? try generateID(index: index) : requested
        var lease = Lease(id: id, ttlSeconds: max(ttlSeconds, config.leaseTTLMinSeconds))
        if state == .primary { refresh(&lease, now: now, extensionMilliseconds: 0) }
        leases[id] = lease
        return (id, lease.ttlSeconds)
    }

    /// A positive, unused ID drawn from a SplitMix64 sequence keyed by the
    /// seed and the log index, so every member draws the same one.
    private func generateID(index: UInt64) throws(CairnError) -> LeaseID {
        var state = config.idSeed ^ (index &* 0x9E37_79B9_7F4A_7C15)
        // Masking the top bit maps at most two draws to one ID, so this many
        // draws always include an unused one.
        for _ in 0...(2 * leases.count + 1) {
            state &+= 0x9E37_79B9_7F4A_7C15
            var mixed = (state ^ (state >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            let candidate = LeaseID(Int64(bitPattern: (mixed ^ (mixed >> 31)) & UInt64(Int64.max)))
            if candidate != .none && leases[candidate] == nil { return candidate }
        }
        throw .leaseExists
    }

    /// Forgets a lease whose keys the caller has deleted; returns its keys in
    /// key order for that deletion.
    func keysToRevoke(_ id: LeaseID) throws(CairnError) -> [Key] {
        guard let lease = leases[id] else { throw .leaseNotFound }
        return lease.keys.sorted()
    }

    mutating func remove(_ id: LeaseID) {
        guard let lease = leases.removeValue(forKey: id) else { return }
        for key in lease.keys { keyLeases.removeValue(forKey: key) }
    }

    /// etcd's Checkpoint: records the remaining TTL only; expiry changes
    /// when a new leader promotes (or the lease is renewed).
    mutating func checkpoint(_ checkpoints: [LeaseCheckpoint], now: MonotonicInstant) {
        for checkpoint in checkpoints where leases[checkpoint.id] != nil {
            leases[checkpoint.id]!.remainingTTLSeconds = checkpoint.remainingTTLSeconds
            if state == .primary { scheduleCheckpoint(&leases[checkpoint.id]!, now: now) }
        }
    }

    /// Follows one write's events in order, so each key ends attached to the
    /// lease of its last put, or to none if it was deleted (property 1).
    mutating func track(_ events: [Event]) {
        for event in events {
            let key = event.keyValue.key
            if let old = keyLeases.removeValue(forKey: key) { leases[old]?.keys.remove(key) }
            let lease = event.keyValue.lease
            guard event.kind == .put, lease != .none, leases[lease] != nil else { continue }
            keyLeases[key] = lease
            leases[lease]!.keys.insert(key)
        }
    }

    /// Rebuilds from a snapshot's leases and the store's live keys.
    mutating func restore(
        leases restored: [(id: LeaseID, ttlSeconds: Int64, remainingTTLSeconds: Int64)],
        liveKeys: [(Key, LeaseID)], now: MonotonicInstant
    ) {
        leases = [:]
        keyLeases = [:]
        for entry in restored {
            leases[entry.id] = Lease(
                id: entry.id, ttlSeconds: entry.ttlSeconds, remainingTTLSeconds: entry.remainingTTLSeconds)
        }
        for (key, lease) in liveKeys where leases[lease] != nil {
            keyLeases[key] = lease
            leases[lease]!.keys.insert(key)
        }
        if state == .primary { promote(now: now) }
    }

    /// The replicated part of every lease, in ID order, for snapshots.
    func replicatedLeases() -> [(id: LeaseID, ttlSeconds: Int64, remainingTTLSeconds: Int64)] {
        leaseIDs().map { id in (id, leases[id]!.ttlSeconds, leases[id]!.remainingTTLSeconds) }
    }
}
