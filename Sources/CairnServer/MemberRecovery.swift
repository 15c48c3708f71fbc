import CairnCore
import CairnMVCC
import CairnRaft
import CairnReplica
import CairnStateMachine
import CairnStorage

/// Opening a data directory: identity, snapshot, WAL, and the replica built
/// from them, or, for an empty directory, the cluster's bootstrap.
enum MemberRecovery {
    struct Opened {
        var identity: MemberIdentity
        var wal: WriteAheadLog
        var snapshots: SnapshotStore
        var replica: Replica
    }

    /// The restart order of CairnStorage: snapshot, then the WAL's hard
    /// state and later entries. A directory without identity is new: the
    /// member writes its bootstrap entries (a new cluster) or starts empty
    /// (joining an existing one) and only then records its identity, so a
    /// crash during bootstrap leaves a directory that bootstraps again.
    static func open(configuration: MemberConfiguration, log: @Sendable (String) -> Void) throws -> Opened {
        let fileSystem = POSIXFileSystem()
        let memberDirectory = configuration.dataDirectory + "/member"
        _ = try fileSystem.createDirectory(configuration.dataDirectory)
        _ = try fileSystem.createDirectory(memberDirectory)
        let snapshots = try SnapshotStore(directory: memberDirectory + "/snap", fileSystem: fileSystem)
        let existing = try MemberIdentity.load(directory: memberDirectory, fileSystem: fileSystem)
        let identity: MemberIdentity
        var recovered: RecoveredState
        let wal: WriteAheadLog
        if let existing {
            if configuration.cluster.members.count > 1 || configuration.cluster.state == .existing {
                log("the data directory exists: ignoring --initial-cluster flags")
            }
            identity = existing
            (wal, recovered) = try Self.recover(
                memberDirectory: memberDirectory, fileSystem: fileSystem, snapshots: snapshots, log: log)
        } else {
            (identity, recovered) = Self.bootstrap(configuration.cluster, name: configuration.name)
            // A half-finished earlier bootstrap left at most a WAL: start it over.
            let walDirectory = memberDirectory + "/wal"
            if fileSystem.exists(walDirectory) {
                for name in try fileSystem.listDirectory(walDirectory) {
                    try fileSystem.remove(walDirectory + "/" + name)
                }
            }
            let opened = try WriteAheadLog.open(
                directory: memberDirectory + "/wal", fileSystem: fileSystem, snapshotIndex: nil)
            wal = opened.0
            var records: [WALRecord] = []
            if recovered.hardState != CairnRaft.HardState() {
                records.append(.hardState(Self.walHardState(recovered.hardState)))
            }
            records += recovered.entries.map { .entry(Self.walEntry($0)) }
            if !records.isEmpty {
                _ = try wal.append(records)
                _ = try wal.sync()
            }
            try MemberIdentity.create(identity, directory: memberDirectory, fileSystem: fileSystem)
            log(
                "bootstrapped member \(identity.member) of cluster \(identity.cluster) (\(configuration.cluster.state == .new ? "new" : "joining existing") cluster)"
            )
        }
        var replicaConfig = ReplicaConfig(
            memberID: identity.member, randomSeed: UInt64.random(in: 1...UInt64.max))
        let cluster = configuration.cluster
        replicaConfig.raft.heartbeatIntervalTicks = 1
        replicaConfig.raft.electionTimeoutTicks = max(
            2, cluster.electionTimeoutMilliseconds / cluster.heartbeatMilliseconds)
        replicaConfig.tickMilliseconds = Int64(cluster.heartbeatMilliseconds)
        replicaConfig.snapshotEntriesInterval = configuration.snapshotEntriesInterval
        // The bytes are in the snapshot files; `Member.send` reads them back.
        replicaConfig.retainsSnapshotData = false
        replicaConfig.catchUpEntries = min(5_000, max(1, configuration.snapshotEntriesInterval / 2))
        replicaConfig.stateMachine = StateMachine.Config(
            storeLimits: MVCCStore.Limits(txnOperationsMax: configuration.txnOperationsMax),
            lessor: Lessor.Config(idSeed: identity.cluster.rawValue))
        let replica: Replica
        do {
            replica = try Replica(config: replicaConfig, recovered: recovered, now: Member.now())
        } catch {
            throw MemberError.snapshotUnusable("\(error)")
        }
        recovered = RecoveredState()
        log(
            "member \(identity.member): applied index \(replica.appliedIndex), revision \(replica.stateMachine.status.revision), last log index \(replica.lastIndex)"
        )
        return Opened(identity: identity, wal: wal, snapshots: snapshots, replica: replica)
    }

    /// IDs and first state for an empty data directory.
    static func bootstrap(_ cluster: ClusterBootstrap, name: String) -> (MemberIdentity, RecoveredState) {
        let records = Bootstrap.initialMembers(
            cluster.members.map { ($0.name, $0.peerURLs) }, token: cluster.token)
        let me = Bootstrap.memberID(peerURLs: cluster.advertisedPeerURLs, token: cluster.token)
        let clusterID = Bootstrap.clusterID(memberIDs: records.map(\.id))
        switch cluster.state {
        case .new:
            return (MemberIdentity(member: me, cluster: clusterID), Bootstrap.newCluster(members: records))
        case .existing:
            // The leader sends the log (or a snapshot) once this member is
            // added. The cluster ID is the one the other listed members
            // bootstrapped with (etcd asks a peer instead: a cluster whose
            // membership changed since its bootstrap refuses this joiner
            // with "cluster ID mismatch").
            let existingID = Bootstrap.clusterID(memberIDs: records.map(\.id).filter { $0 != me })
            return (MemberIdentity(member: me, cluster: existingID), RecoveredState())
        }
    }

    /// Snapshot first, then the WAL's entries after it.
    static func recover(
        memberDirectory: String, fileSystem: POSIXFileSystem, snapshots: SnapshotStore,
        log: @Sendable (String) -> Void
    ) throws -> (WriteAheadLog, RecoveredState) {
        var snapshot: Snapshot?
        if let loaded = try snapshots.loadLatest() {
            for problem in loaded.skipped { log("skipped damaged snapshot \(problem)") }
            do {
                snapshot = try Snapshot(decoding: loaded.bytes)
            } catch {
                throw MemberError.snapshotUnusable("snapshot at \(loaded.index): \(error)")
            }
            log("loaded snapshot at index \(loaded.index)")
        }
        let (wal, recovery) = try WriteAheadLog.open(
            directory: memberDirectory + "/wal", fileSystem: fileSystem, snapshotIndex: snapshot?.index)
        if let repair = recovery.tailRepair { log("WAL tail repaired: \(repair)") }
        var entries: [Entry] = []
        entries.reserveCapacity(recovery.entries.count)
        for stored in recovery.entries where stored.index > (snapshot?.index ?? 0) {
            do {
                entries.append(try Entry(decoding: stored.payload))
            } catch {
                throw MemberError.storageFailed("WAL entry \(stored.index) cannot be decoded: \(error)")
            }
        }
        let hardState =
            wal.hardState.map { CairnRaft.HardState(term: $0.term, vote: $0.vote, commit: $0.commit) }
            ?? CairnRaft.HardState()
        log("replaying \(entries.count) WAL entries after snapshot \(snapshot?.index ?? 0)")
        return (wal, RecoveredState(snapshot: snapshot, hardState: hardState, entries: entries))
    }

    static func walEntry(_ entry: Entry) -> LogEntry {
        LogEntry(index: entry.index, term: entry.term, payload: entry.encoded())
    }

    static func walHardState(_ state: CairnRaft.HardState) -> CairnStorage.HardState {
        CairnStorage.HardState(term: state.term, vote: state.vote, commit: state.commit)
    }
}
