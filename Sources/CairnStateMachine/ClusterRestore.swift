import CairnCore

extension StateMachine {
    /// etcd's `snapshot restore`: a snapshot's keyspace, leases, alarms and
    /// users are kept, its cluster is not. The restored data directory starts
    /// a new cluster whose bootstrap membership entries (indexes 1...N) are
    /// applied on top of this state, so the members are forgotten and the
    /// applied index rewound to before them (etcd rewrites the consistent
    /// index the same way).
    public mutating func forgetCluster() {
        members = MemberList()
        appliedIndex = 0
    }
}
