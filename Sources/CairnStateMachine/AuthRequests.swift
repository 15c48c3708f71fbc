import CairnCore
import CairnMVCC

/// The checks the shell runs before serving or proposing a request, where
/// the answer depends on more than the auth store: leases name keys the
/// user must be able to write.
extension StateMachine {
    /// Range: read on the range.
    public func authorize(_ identity: AuthIdentity?, range: RangeRequest) throws(CairnError) {
        try auth.check(identity, range: range.range, access: .read)
    }

    /// Put: write on the key (read too with `prev_kv`), and write on every
    /// key already attached to the put's lease: a user who could not revoke
    /// that lease may not attach to it (etcd's `checkLeasePuts`).
    public func authorize(_ identity: AuthIdentity?, put: PutRequest) throws(CairnError) {
        try auth.check(identity, put: put)
        try authorizeLeaseKeys(identity, put.lease)
    }

    /// DeleteRange: write on the range (read too with `prev_kv`).
    public func authorize(_ identity: AuthIdentity?, deleteRange: DeleteRangeRequest) throws(CairnError) {
        try auth.check(identity, deleteRange: deleteRange)
    }

    /// Txn: every compare and every operation of both branches, nested
    /// transactions included, plus the leases of its puts.
    public func authorize(_ identity: AuthIdentity?, txn: TxnRequest) throws(CairnError) {
        guard auth.isEnabled else { return }
        try auth.check(identity, txn: txn)
        for lease in Self.leases(of: txn) { try authorizeLeaseKeys(identity, lease) }
    }

    /// LeaseRevoke: write on every key attached to the lease. An unknown
    /// lease passes here and fails with `leaseNotFound` when applied.
    public func authorize(_ identity: AuthIdentity?, leaseRevoke id: LeaseID) throws(CairnError) {
        try authorizeLeaseKeys(identity, id)
    }

    /// Watch: read on the watched range.
    public func authorize(_ identity: AuthIdentity?, watch range: KeyRange) throws(CairnError) {
        try auth.check(identity, range: range, access: .read)
    }

    /// A write a client asked for, by kind, as etcd 3.4 checks them: KV
    /// writes and lease revokes by key range; compaction and lease grants
    /// by nobody (etcd checks neither); auth changes and every other kind
    /// (membership, internal entries, kinds added later) need the root role.
    public func authorize(_ identity: AuthIdentity?, operation: Command.Operation) throws(CairnError) {
        guard auth.isEnabled else { return }
        switch operation {
        case .put(let put): try authorize(identity, put: put)
        case .deleteRange(let delete): try authorize(identity, deleteRange: delete)
        case .txn(let txn): try authorize(identity, txn: txn)
        case .leaseRevoke(let id): try authorize(identity, leaseRevoke: id)
        case .compact, .leaseGrant: return
        default: try authorizeAdmin(identity)
        }
    }

    /// Maintenance, membership and auth administration: the root role.
    public func authorizeAdmin(_ identity: AuthIdentity?) throws(CairnError) {
        try auth.checkAdmin(identity)
    }

    /// A digest of the auth store's replicated state (its snapshot
    /// encoding), equal on members that applied the same entries; compared
    /// with the key-space hash to detect a diverged member.
    public var authHash: UInt32 {
        var writer = ByteWriter()
        writer.authStore(auth)
        return CRC32C.checksum(writer.bytes[...])
    }

    private func authorizeLeaseKeys(_ identity: AuthIdentity?, _ id: LeaseID) throws(CairnError) {
        guard auth.isEnabled, id != .none, let lease = lessor.leases[id] else { return }
        for key in lease.keys.sorted() {
            try auth.check(identity, range: .single(key), access: .write)
        }
    }

    /// The leases the puts of a txn (both branches, nested) attach.
    static func leases(of txn: TxnRequest) -> [LeaseID] {
        var leases: [LeaseID] = []
        for operation in txn.success + txn.failure {
            switch operation {
            case .put(let put) where put.lease != .none: leases.append(put.lease)
            case .txn(let inner): leases += Self.leases(of: inner)
            case .put, .range, .deleteRange: break
            }
        }
        return leases
    }
}
