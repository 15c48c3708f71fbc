import ArgumentParser
import CairnServer

/// `cairnctl snapshot status FILE`: etcdctl's four figures, after verifying
/// the file as a restore would (its SHA-256 trailer, then the state's own
/// CRC-32C), so a damaged file is reported rather than described.
struct SnapshotStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Verify a snapshot file and show its hash, revision, total keys and total size.",
        discussion: """
            HASH is the CRC-32C of the replicated state in the file; TOTAL KEYS counts the keys \
            live at REVISION (etcd counts its database's bucket entries); TOTAL SIZE is the \
            state's size as `etcdctl endpoint status` shows it.
            """
    )

    @Argument(help: "The file `etcdctl snapshot save` wrote.")
    var file: String

    @Option(
        name: [.customShort("w"), .customLong("write-out")], help: "Output format: simple, table or json.")
    var writeOut = "simple"

    func validate() throws {
        guard ["simple", "table", "json"].contains(self.writeOut) else {
            throw ValidationError("unknown output format \"\(self.writeOut)\": use simple, table or json")
        }
    }

    func run() throws {
        let progress = ProgressLine()
        let snapshot: SavedSnapshot
        do {
            snapshot = try SavedSnapshot.read(path: self.file, progress: progress.update)
            progress.finish()
        } catch {
            progress.finish()
            throw fail("\(error)")
        }
        print(Self.render(snapshot.status, format: self.writeOut))
    }

    /// The figures in etcdctl's `-w simple|table|json` layouts.
    static func render(_ status: SnapshotFileStatus, format: String) -> String {
        let hash = String(status.hash, radix: 16)
        let row = [hash, String(status.revision), String(status.totalKeys), humanBytes(status.totalSize)]
        switch format {
        case "json":
            return
                "{\"hash\":\(status.hash),\"revision\":\(status.revision),\"totalKey\":\(status.totalKeys),\"totalSize\":\(status.totalSize)}"
        case "table":
            return table(header: ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], row: row)
        default:
            return row.joined(separator: ", ")
        }
    }

    /// etcdctl's table: centred headers, right-aligned cells.
    static func table(header: [String], row: [String]) -> String {
        let widths = zip(header, row).map { max($0.count, $1.count) }
        let rule = "+" + widths.map { String(repeating: "-", count: $0 + 2) + "+" }.joined()
        func line(_ cells: [String], centred: Bool) -> String {
            "|"
                + zip(cells, widths).map { cell, width in
                    let gap = width - cell.count
                    let left = centred ? gap / 2 : gap
                    return " " + String(repeating: " ", count: left) + cell
                        + String(repeating: " ", count: gap - left) + " |"
                }.joined()
        }
        return [rule, line(header, centred: true), rule, line(row, centred: false), rule].joined(
            separator: "\n")
    }
}

/// `cairnctl snapshot restore FILE`: etcd's offline restore into a new data
/// directory and a new membership (`MemberDataDirectory.restore`).
struct SnapshotRestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a snapshot file into a new member data directory with a new membership.",
        discussion: """
            Run it once per member of the new cluster, with the same --initial-cluster and \
            --initial-cluster-token and each member's own --name and --initial-advertise-peer-urls; \
            then start each member with `cairn member --name <name> --data-dir <dir>` and its \
            listen URLs. Keys keep their revisions; leases keep their keys and restart from their \
            remaining TTL once the new cluster has a leader.
            """
    )

    @Argument(help: "The file `etcdctl snapshot save` wrote.")
    var file: String

    @Option(help: "Human-readable name for this member.")
    var name = "default"

    @Option(
        help: "Path to the data directory to create; it must be missing or empty (default: <name>.cairn).")
    var dataDir: String?

    @Option(help: "Initial cluster configuration for the restored cluster: name=peer-URL pairs.")
    var initialCluster = "default=http://localhost:2380"

    @Option(help: "Initial cluster token for the restored cluster (it seeds the new IDs).")
    var initialClusterToken = "etcd-cluster"

    @Option(help: "This member's peer URLs to advertise to the rest of the cluster.")
    var initialAdvertisePeerUrls = "http://localhost:2380"

    @Flag(help: "Ignore the snapshot's SHA-256 trailer (the state's own CRC-32C is still checked).")
    var skipHashCheck = false

    func run() throws {
        let dataDirectory = self.dataDir ?? "\(self.name).cairn"
        let progress = ProgressLine()
        let restored: RestoredMember
        do {
            let configuration = SnapshotRestoreConfiguration(
                name: self.name, dataDirectory: dataDirectory,
                initialCluster: try ClusterBootstrap.initialMembers(parsing: self.initialCluster),
                token: self.initialClusterToken,
                advertisedPeerURLs: self.initialAdvertisePeerUrls.split(separator: ",").map {
                    String($0.filter { $0 != " " })
                })
            let snapshot = try SavedSnapshot.read(
                path: self.file, skipHashCheck: self.skipHashCheck, progress: progress.update)
            progress.finish()
            restored = try MemberDataDirectory.restore(snapshot, configuration, progress: progress.update)
            progress.finish()
        } catch {
            progress.finish()
            throw fail("\(error)")
        }
        let members = restored.members.map { "\($0.name)=\($0.id)" }.joined(separator: ",")
        print(
            "restored snapshot \(self.file) into \(dataDirectory): revision \(restored.revision), keys \(restored.keys), leases \(restored.leases)"
        )
        print("member \(restored.member) of cluster \(restored.cluster); members \(members)")
    }
}
