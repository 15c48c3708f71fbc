import CairnAPI
import Testing

@Suite struct ServiceDescriptorTests {
    /// etcd 3.5's method counts per service.
    @Test func methodCountsPerService() {
        #expect(EtcdKV.all.count == 5)
        #expect(EtcdWatch.all.count == 1)
        #expect(EtcdLease.all.count == 5)
        #expect(EtcdCluster.all.count == 5)
        #expect(EtcdMaintenance.all.count == 8)
        #expect(EtcdAuth.all.count == 17)
        #expect(EtcdLock.all.count == 2)
        #expect(EtcdElection.all.count == 5)
        #expect(EtcdServices.allPaths.count == 48)
    }

    @Test func pathsAreUniqueAndWellFormed() {
        let paths = EtcdServices.allPaths
        #expect(Set(paths).count == paths.count)
        let packages: Set<Substring> = ["etcdserverpb", "v3lockpb", "v3electionpb"]
        for path in paths {
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            #expect(parts.count == 3 && parts[0].isEmpty, "\(path)")
            guard parts.count == 3 else { continue }
            let service = parts[1].split(separator: ".")
            #expect(service.count == 2 && packages.contains(service[0]), "\(path)")
            #expect(parts[2].first?.isUppercase == true, "\(path)")
            #expect(parts[2].allSatisfy { $0.isLetter }, "\(path)")
        }
    }

    @Test func pathsMatchEtcdsRoutes() {
        #expect(EtcdKV.put.path == "/etcdserverpb.KV/Put")
        #expect(EtcdKV.range.path == "/etcdserverpb.KV/Range")
        #expect(EtcdKV.compact.path == "/etcdserverpb.KV/Compact")
        #expect(EtcdWatch.watch.path == "/etcdserverpb.Watch/Watch")
        #expect(EtcdMaintenance.hashKV.path == "/etcdserverpb.Maintenance/HashKV")
        #expect(EtcdMaintenance.downgrade.path == "/etcdserverpb.Maintenance/Downgrade")
        #expect(EtcdAuth.authStatus.path == "/etcdserverpb.Auth/AuthStatus")
        #expect(EtcdLock.lock.path == "/v3lockpb.Lock/Lock")
        #expect(EtcdElection.observe.path == "/v3electionpb.Election/Observe")
    }

    @Test func streamingKindsFollowTheProtos() {
        #expect(EtcdWatch.watch.streaming == .bidirectional)
        #expect(EtcdLease.leaseKeepAlive.streaming == .bidirectional)
        #expect(EtcdMaintenance.snapshot.streaming == .serverStreaming)
        #expect(EtcdElection.observe.streaming == .serverStreaming)
        #expect(EtcdKV.txn.streaming == .unary)
        #expect(EtcdLease.leaseGrant.streaming == .unary)
        #expect(EtcdElection.campaign.streaming == .unary)
    }

    /// The descriptors carry the message types, so a server can only register
    /// a handler of the right shape; this is checked at compile time here.
    @Test func descriptorsCarryMessageTypes() {
        let put: MethodDescriptor<Etcdserverpb_PutRequest, Etcdserverpb_PutResponse> = EtcdKV.put
        let observe: MethodDescriptor<V3electionpb_LeaderRequest, V3electionpb_LeaderResponse> =
            EtcdElection.observe
        #expect(put.path.hasSuffix("/Put"))
        #expect(observe.path.hasSuffix("/Observe"))
    }
}
