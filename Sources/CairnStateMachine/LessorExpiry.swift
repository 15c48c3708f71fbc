import CairnCore

// MARK: leader-local expiry (never replicated, never in snapshots)

extension Lessor {
    /// What a keep-alive returns: the TTL the lease was renewed for, and a
    /// checkpoint to propose when the lease carried a checkpointed remaining
    /// TTL, which must be cleared everywhere or a new leader would restart
    /// the renewed lease with the stale remainder (etcd does the same).
    public struct Renewal: Hashable, Sendable {
        public var ttlSeconds: Int64
        public var checkpointToPropose: LeaseCheckpoint?
    }

    /// etcd's Promote: this member became leader; every lease restarts its
    /// clock from now with its checkpointed remaining TTL (else its TTL),
    /// plus `extensionMilliseconds` (etcd passes the election timeout so
    /// clients have time to find the new leader).
    public mutating func promote(now: MonotonicInstant, extensionMilliseconds: Int64 = 0) {
        state = .primary
        for id in leases.keys {
            refresh(&leases[id]!, now: now, extensionMilliseconds: extensionMilliseconds)
        }
    }

    /// etcd's Demote: this member is no longer leader; no lease expires here.
    public mutating func demote() {
        state = .secondary
        for id in leases.keys {
            leases[id]!.expiry = nil
            leases[id]!.revokeProposedAt = nil
            leases[id]!.nextCheckpointAt = nil
        }
    }

    /// etcd's Renew (a keep-alive): only the leader renews; an unknown or
    /// already expired lease is `leaseNotFound` (its revoke is on its way).
    public mutating func renew(_ id: LeaseID, now: MonotonicInstant) throws(CairnError) -> Renewal {
        guard state == .primary else { throw .notLeader }
        guard var lease = leases[id] else { throw .leaseNotFound }
        if let expiry = lease.expiry, expiry <= now { throw .leaseNotFound }
        let checkpoint =
            lease.remainingTTLSeconds > 0 ? LeaseCheckpoint(id: id, remainingTTLSeconds: 0) : nil
        // The remaining TTL is replicated state: only the proposed checkpoint
        // clears it, on every member at once. The renewal itself uses the
        // full TTL (etcd 3.5 restarts from the stale remainder here).
        refresh(&lease, now: now, extensionMilliseconds: 0, ttlSeconds: lease.ttlSeconds)
        leases[id] = lease
        return Renewal(ttlSeconds: lease.ttlSeconds, checkpointToPropose: checkpoint)
    }

    /// etcd's TimeToLive; `keys` asks for the attached keys too.
    public func timeToLive(_ id: LeaseID, keys: Bool, now: MonotonicInstant) throws(CairnError) -> LeaseStatus
    {
        guard let lease = leases[id] else { throw .leaseNotFound }
        let remaining: Int64
        if let expiry = lease.expiry {
            remaining = max(0, now.milliseconds(until: expiry) / 1000)
        } else {
            remaining = lease.effectiveTTLSeconds
        }
        return LeaseStatus(
            id: id, grantedTTLSeconds: lease.ttlSeconds, remainingTTLSeconds: remaining,
            keys: keys ? lease.keys.sorted() : [])
    }

    /// Leases whose expiry has passed and whose revoke should be proposed
    /// now, in ID order, at most `expiredLeasesPerCallMax`. A lease handed out
    /// is not handed out again for `revokeRetryMilliseconds`, in case its
    /// proposal was lost. Empty on a secondary.
    public mutating func expired(now: MonotonicInstant) -> [LeaseID] {
        guard state == .primary else { return [] }
        var due: [LeaseID] = []
        for id in leaseIDs() {
            guard due.count < config.expiredLeasesPerCallMax else { break }
            let lease = leases[id]!
            guard let expiry = lease.expiry, expiry <= now else { continue }
            if let proposed = lease.revokeProposedAt,
                now < proposed.adding(milliseconds: config.revokeRetryMilliseconds)
            {
                continue
            }
            leases[id]!.revokeProposedAt = now
            due.append(id)
        }
        return due
    }

    /// Remaining-TTL checkpoints due now, to propose as one
    /// `leaseCheckpoint` command: at most `checkpointsPerProposalMax`, in ID
    /// order, each lease again after `checkpointIntervalSeconds` while its
    /// remaining TTL exceeds that interval. Empty on a secondary.
    public mutating func checkpointsDue(now: MonotonicInstant) -> [LeaseCheckpoint] {
        guard state == .primary else { return [] }
        var due: [LeaseCheckpoint] = []
        for id in leaseIDs() {
            guard due.count < config.checkpointsPerProposalMax else { break }
            guard let at = leases[id]!.nextCheckpointAt, at <= now, let expiry = leases[id]!.expiry else {
                continue
            }
            let remainingMilliseconds = now.milliseconds(until: expiry)
            guard remainingMilliseconds > 0 else { continue }
            leases[id]!.nextCheckpointAt = nil
            due.append(
                LeaseCheckpoint(
                    id: id,
                    remainingTTLSeconds: remainingMilliseconds / 1000
                        + (remainingMilliseconds % 1000 == 0 ? 0 : 1)))
        }
        return due
    }

    /// Restarts a lease's clock: expiry = now + extension + TTL (by default
    /// the effective TTL: the checkpointed remainder, else the granted TTL).
    func refresh(
        _ lease: inout Lease, now: MonotonicInstant, extensionMilliseconds: Int64, ttlSeconds: Int64? = nil
    ) {
        let ttlMilliseconds = (ttlSeconds ?? lease.effectiveTTLSeconds).multipliedReportingOverflow(by: 1000)
        let total = ttlMilliseconds.overflow ? Int64.max : ttlMilliseconds.partialValue
        lease.expiry = now.adding(milliseconds: extensionMilliseconds).adding(milliseconds: total)
        lease.revokeProposedAt = nil
        scheduleCheckpoint(&lease, now: now)
    }

    /// etcd's `scheduleCheckpointIfNeeded`: only leases that outlive one
    /// checkpoint interval need their remaining TTL recorded.
    func scheduleCheckpoint(_ lease: inout Lease, now: MonotonicInstant) {
        guard let expiry = lease.expiry else { return }
        let intervalMilliseconds = config.checkpointIntervalSeconds * 1000
        if now.milliseconds(until: expiry) > intervalMilliseconds {
            lease.nextCheckpointAt = now.adding(milliseconds: intervalMilliseconds)
        } else {
            lease.nextCheckpointAt = nil
        }
    }
}
