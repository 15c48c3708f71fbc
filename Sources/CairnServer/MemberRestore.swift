import CairnCore
import CairnPeer
import CairnRaft
import CairnReplica
import CairnStateMachine
import CairnStorage
import Foundation

/// etcd's `snapshot restore` flags: the new member and the new cluster.
public struct SnapshotRestoreConfiguration: Sendable {
    /// `--name`: this member's name in `initialCluster`.
    public var name: String
    /// `--data-dir`: must be missing or empty.
    public var dataDirectory: String
    /// `--initial-cluster`: every member of the new cluster.
    public var initialCluster: [ClusterBootstrap.InitialMember]
    /// `--initial-cluster-token`: seeds the new member and cluster IDs.
    public var token: String
    /// `--initial-advertise-peer-urls`: this member's entry in `initialCluster`.
    public var advertisedPeerURLs: [String]

    public init(
        name: String, dataDirectory: String, initialCluster: [ClusterBootstrap.InitialMember], token: String,
        advertisedPeerURLs: [String]
    ) {
        self.name = name
        self.dataDirectory = dataDirectory
        self.initialCluster = initialCluster
        self.token = token
        self.advertisedPeerURLs = advertisedPeerURLs
    }
}

/// What a restore wrote, read back the way `cairn member` reads it.
public struct RestoredMember: Sendable, Hashable {
    public var member: MemberID
    public var cluster: ClusterID
    /// The new membership, by ID.
    public var members: [MemberRecord]
    /// Raft index of the restored snapshot: one entry per initial member.
    public var snapshotIndex: UInt64
    /// The store's revision (the saved one: revisions are kept).
    public var revision: Int64
    /// Keys live at `revision`.
    public var keys: Int
    public var leases: Int
}

/// Writing a member's data directory offline, from a saved snapshot. The
/// format knowledge stays with `MemberRecovery` (which reads what this
/// writes) and the bootstrap stays `MemberRecovery.bootstrap`.
public enum MemberDataDirectory {
    /// etcd's `snapshot restore`, with etcd's layout: the snapshot's keyspace
    /// (revisions kept), leases (restarted from their remaining TTL when the
    /// new cluster elects a leader), alarms and users; a new membership from
    /// `--initial-cluster`, with the IDs a new cluster's bootstrap derives.
    /// The directory holds the bootstrap entries and a hard state committing
    /// them in the WAL, and a snapshot at their last index (term 1) holding
    /// the state with them applied, so `cairn member` starts from it as an
    /// existing member: `--initial-cluster*` flags are then ignored, and
    /// `--initial-cluster-state new` works as in etcd.
    ///
    /// Everything is written under `member.restoring` and renamed to `member`
    /// at the end, so a crash leaves no half-restored member directory.
    public static func restore(
        _ snapshot: SavedSnapshot, _ configuration: SnapshotRestoreConfiguration,
        progress: (SnapshotFileProgress) -> Void = { _ in }
    ) throws(SnapshotFileError) -> RestoredMember {
        let cluster = try ClusterBootstrap.verified(
            name: configuration.name, members: configuration.initialCluster, token: configuration.token,
            advertisedPeerURLs: configuration.advertisedPeerURLs)
        try Self.requireEmpty(configuration.dataDirectory)
        let (identity, initial) = MemberRecovery.bootstrap(cluster, name: configuration.name)
        var machine = snapshot.stateMachine
        machine.forgetCluster()
        var confState = ConfState()
        for entry in initial.entries {
            guard let decoded = MembershipEntry(decoding: entry.data) else {
                preconditionFailure("Bootstrap.newCluster wrote an undecodable membership entry")
            }
            _ = machine.applyMembership(
                index: entry.index, change: decoded.membershipChange, record: decoded.record)
            switch decoded.change.kind {
            case .addVoter: confState.voters.insert(decoded.change.node)
            case .addLearner: confState.learners.insert(decoded.change.node)
            case .remove: preconditionFailure("a bootstrap entry removes a member")
            }
        }
        let raftSnapshot = Snapshot(
            index: initial.hardState.commit, term: initial.hardState.term, confState: confState,
            data: machine.snapshot())
        let memberDirectory = configuration.dataDirectory + "/member"
        let staging = configuration.dataDirectory + "/member.restoring"
        do {
            try Self.write(raftSnapshot, initial, identity, into: staging, progress: progress)
            let fileSystem = POSIXFileSystem()
            try fileSystem.rename(staging, to: memberDirectory)
            try fileSystem.syncDirectory(configuration.dataDirectory)
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw SnapshotFileError("cannot write \(configuration.dataDirectory): \(error)")
        }
        return try Self.readBack(memberDirectory, identity: identity, expected: raftSnapshot, snapshot.status)
    }

    /// etcd's check: a data directory that exists must be empty.
    static func requireEmpty(_ dataDirectory: String) throws(SnapshotFileError) {
        let fileSystem = POSIXFileSystem()
        guard fileSystem.exists(dataDirectory) else { return }
        let entries = try? fileSystem.listDirectory(dataDirectory)
        guard let entries, entries.isEmpty else {
            throw SnapshotFileError("data-dir \"\(dataDirectory)\" not empty or could not be read")
        }
    }

    /// The snapshot file first, then the WAL naming it (CairnStorage's save
    /// order), then the identity that makes the directory an existing one.
    private static func write(
        _ snapshot: Snapshot, _ initial: RecoveredState, _ identity: MemberIdentity, into directory: String,
        progress: (SnapshotFileProgress) -> Void
    ) throws {
        let fileSystem = POSIXFileSystem()
        let store = try SnapshotStore(directory: directory + "/snap", fileSystem: fileSystem)
        let writer = try store.beginSnapshot(index: snapshot.index, term: snapshot.term)
        let bytes = snapshot.encoded()
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + SavedSnapshot.readChunkBytes)
            try writer.write(Array(bytes[offset..<end]))
            offset = end
            progress(.writing(bytesDone: offset, bytesTotal: bytes.count))
        }
        try writer.commit()
        let (wal, _) = try WriteAheadLog.open(directory: directory + "/wal", fileSystem: fileSystem)
        var records: [WALRecord] = [.hardState(MemberRecovery.walHardState(initial.hardState))]
        records += initial.entries.map { .entry(MemberRecovery.walEntry($0)) }
        records.append(.snapshotMarker(SnapshotMarker(index: snapshot.index, term: snapshot.term)))
        _ = try wal.append(records)
        _ = try wal.sync()
        try wal.close()
        try MemberIdentity.create(identity, directory: directory, fileSystem: fileSystem)
    }

    /// Opens the restored directory as `cairn member` does (identity,
    /// snapshot, WAL, replica) and checks it is what was meant.
    private static func readBack(
        _ memberDirectory: String, identity: MemberIdentity, expected: Snapshot, _ status: SnapshotFileStatus
    ) throws(SnapshotFileError) -> RestoredMember {
        let replica: Replica
        do {
            let fileSystem = POSIXFileSystem()
            guard try MemberIdentity.load(directory: memberDirectory, fileSystem: fileSystem) == identity
            else {
                throw SnapshotFileError("the identity read back differs from the one written")
            }
            let snapshots = try SnapshotStore(directory: memberDirectory + "/snap", fileSystem: fileSystem)
            let (wal, recovered) = try MemberRecovery.recover(
                memberDirectory: memberDirectory, fileSystem: fileSystem, snapshots: snapshots, log: { _ in })
            try wal.close()
            replica = try Replica(
                config: ReplicaConfig(memberID: identity.member), recovered: recovered,
                now: MonotonicInstant(milliseconds: 0))
        } catch {
            throw SnapshotFileError("the restored data directory does not open: \(error)")
        }
        let figures = replica.stateMachine.status
        guard replica.appliedIndex == expected.index, replica.confState == expected.confState,
            figures.revision == status.revision, figures.keyCount == status.totalKeys
        else {
            throw SnapshotFileError(
                "the restored data directory reads back as index \(replica.appliedIndex), revision \(figures.revision), \(figures.keyCount) keys; expected \(expected.index), \(status.revision), \(status.totalKeys)"
            )
        }
        return RestoredMember(
            member: identity.member, cluster: identity.cluster, members: replica.members,
            snapshotIndex: expected.index, revision: figures.revision, keys: figures.keyCount,
            leases: figures.leaseCount)
    }
}

extension ClusterBootstrap {
    /// `--initial-cluster`'s `name=peer-URL` pairs separated by commas (a
    /// name may repeat for several URLs, as in etcd).
    public static func initialMembers(parsing text: String) throws(SnapshotFileError) -> [InitialMember] {
        var members: [InitialMember] = []
        for pair in text.split(separator: ",").map({ String($0.filter { $0 != " " }) }) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw SnapshotFileError("--initial-cluster entry \"\(pair)\" is not name=peer-URL")
            }
            do throws(PeerURLError) {
                _ = try PeerURL(parsing: parts[1])
            } catch {
                throw SnapshotFileError("\(error)")
            }
            if let index = members.firstIndex(where: { $0.name == parts[0] }) {
                members[index].peerURLs.append(parts[1])
            } else {
                members.append(InitialMember(name: parts[0], peerURLs: [parts[1]]))
            }
        }
        return members
    }

    /// etcd's bootstrap checks (`VerifyBootstrap`, same messages): the local
    /// name is in the initial cluster, with the advertised peer URLs, and no
    /// URL appears twice. The result describes a new cluster.
    static func verified(
        name: String, members: [InitialMember], token: String, advertisedPeerURLs: [String]
    ) throws(SnapshotFileError) -> ClusterBootstrap {
        guard let mine = members.first(where: { $0.name == name }) else {
            throw SnapshotFileError(
                "couldn't find local name \"\(name)\" in the initial cluster configuration")
        }
        guard Set(mine.peerURLs) == Set(advertisedPeerURLs) else {
            throw SnapshotFileError(
                "--initial-cluster has \(name)=\(mine.peerURLs.joined(separator: ",")) but missing from --initial-advertise-peer-urls=\(advertisedPeerURLs.joined(separator: ","))"
            )
        }
        let urls = members.flatMap(\.peerURLs)
        guard Set(urls).count == urls.count else {
            throw SnapshotFileError("--initial-cluster has duplicate peer URLs")
        }
        return ClusterBootstrap(
            members: members, state: .new, token: token, listenPeerURLs: [],
            advertisedPeerURLs: advertisedPeerURLs, heartbeatMilliseconds: 100,
            electionTimeoutMilliseconds: 1000)
    }
}
