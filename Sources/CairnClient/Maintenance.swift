import CairnAPI
import CairnRPC

extension EtcdClient {
    // MARK: Maintenance and cluster

    /// The contacted member's status: version, database size, leader, Raft
    /// index and term, errors.
    public func status() async throws -> Etcdserverpb_StatusResponse {
        try await self.unary(EtcdMaintenance.status, Etcdserverpb_StatusRequest())
    }

    /// The hash of the key space up to `revision` (0 for the latest), to
    /// compare members' stores.
    public func hashKV(revision: Int64 = 0) async throws -> Etcdserverpb_HashKVResponse {
        var request = Etcdserverpb_HashKVRequest()
        request.revision = revision
        return try await self.unary(EtcdMaintenance.hashKV, request)
    }

    /// The cluster's active alarms (NOSPACE, CORRUPT), by member.
    public func alarms() async throws -> [Etcdserverpb_AlarmMember] {
        var request = Etcdserverpb_AlarmRequest()
        request.action = .get
        return try await self.unary(EtcdMaintenance.alarm, request).alarms
    }

    /// The cluster's members.
    ///
    /// - Parameter linearizable: read the list through the leader rather
    ///   than from the contacted member's possibly stale view (etcd 3.5+;
    ///   older servers ignore it).
    public func memberList(linearizable: Bool = false) async throws -> [Etcdserverpb_Member] {
        var request = Etcdserverpb_MemberListRequest()
        request.linearizable = linearizable
        return try await self.unary(EtcdCluster.memberList, request).members
    }
}
