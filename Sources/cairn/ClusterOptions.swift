import ArgumentParser
import CairnPeer
import CairnServer

/// etcd's clustering flags, with etcd's names and defaults. A member that
/// restarts from an existing data directory ignores the `--initial-*`
/// flags, as etcd does: its membership is in its log.
struct ClusterOptions: ParsableArguments {
    @Option(
        help:
            "Initial cluster configuration: name=peer-URL pairs separated by commas (default: this member alone)."
    )
    var initialCluster: String?

    @Option(help: "Initial cluster state: 'new' (bootstrap) or 'existing' (join a running cluster).")
    var initialClusterState = "new"

    @Option(help: "Initial cluster token; members of one cluster must share it (it seeds the IDs).")
    var initialClusterToken = "etcd-cluster"

    @Option(help: "Comma-separated URLs to listen on for peer traffic.")
    var listenPeerUrls = "http://localhost:2380"

    @Option(
        help:
            "This member's peer URLs to advertise to the rest of the cluster (default: the listen peer URLs)."
    )
    var initialAdvertisePeerUrls: String?

    @Option(help: "Time (in milliseconds) of a heartbeat interval.")
    var heartbeatInterval = 100

    @Option(help: "Time (in milliseconds) for an election to timeout.")
    var electionTimeout = 1000

    /// The bootstrap description these flags give for member `name`.
    func bootstrap(name: String) throws -> ClusterBootstrap {
        let advertised = Self.list(self.initialAdvertisePeerUrls ?? self.listenPeerUrls)
        for url in advertised { _ = try PeerURL.parsed(url) }
        let members: [ClusterBootstrap.InitialMember]
        if let initialCluster {
            members = try Self.parse(initialCluster: initialCluster)
        } else {
            members = [ClusterBootstrap.InitialMember(name: name, peerURLs: advertised)]
        }
        guard let mine = members.filter({ $0.name == name }).first else {
            throw ValidationError(
                "couldn't find local name \"\(name)\" in the initial cluster configuration")
        }
        guard Set(mine.peerURLs) == Set(advertised) else {
            throw ValidationError(
                "--initial-cluster has \(name)=\(mine.peerURLs.joined(separator: ",")) but missing from --initial-advertise-peer-urls=\(advertised.joined(separator: ","))"
            )
        }
        let state: ClusterBootstrap.State
        switch self.initialClusterState {
        case "new": state = .new
        case "existing": state = .existing
        default:
            throw ValidationError(
                "invalid value \"\(self.initialClusterState)\" for --initial-cluster-state: use 'new' or 'existing'"
            )
        }
        guard self.heartbeatInterval > 0, self.electionTimeout >= 5 * self.heartbeatInterval else {
            throw ValidationError(
                "--election-timeout[\(self.electionTimeout)ms] should be at least 5 times as --heartbeat-interval[\(self.heartbeatInterval)ms]"
            )
        }
        return ClusterBootstrap(
            members: members, state: state, token: self.initialClusterToken,
            listenPeerURLs: try Self.list(self.listenPeerUrls).map { try PeerURL.parsed($0) },
            advertisedPeerURLs: advertised, heartbeatMilliseconds: self.heartbeatInterval,
            electionTimeoutMilliseconds: self.electionTimeout)
    }

    /// `a=http://h:1,b=http://h:2,a=http://h:3` (a name may repeat for
    /// several URLs, as in etcd).
    static func parse(initialCluster: String) throws -> [ClusterBootstrap.InitialMember] {
        var members: [ClusterBootstrap.InitialMember] = []
        for pair in Self.list(initialCluster) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw ValidationError("--initial-cluster entry \"\(pair)\" is not name=peer-URL")
            }
            _ = try PeerURL.parsed(parts[1])
            if let index = members.firstIndex(where: { $0.name == parts[0] }) {
                members[index].peerURLs.append(parts[1])
            } else {
                members.append(ClusterBootstrap.InitialMember(name: parts[0], peerURLs: [parts[1]]))
            }
        }
        let urls = members.flatMap(\.peerURLs)
        guard Set(urls).count == urls.count else {
            throw ValidationError("--initial-cluster has duplicate peer URLs")
        }
        return members
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0.filter { $0 != " " }) }
    }
}

extension PeerURL {
    /// Parses with the error argument-parser shows to the operator.
    static func parsed(_ text: String) throws -> PeerURL {
        do {
            return try PeerURL(parsing: text)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
