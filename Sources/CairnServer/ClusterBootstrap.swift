import CairnPeer

/// How a member starts when its data directory is empty: etcd's
/// `--initial-cluster*` flags and peer URLs. Ignored on restart.
public struct ClusterBootstrap: Sendable {
    /// One `name=peer-URL` group of `--initial-cluster`.
    public struct InitialMember: Hashable, Sendable {
        public var name: String
        public var peerURLs: [String]

        public init(name: String, peerURLs: [String]) {
            self.name = name
            self.peerURLs = peerURLs
        }
    }

    /// etcd's `--initial-cluster-state`.
    public enum State: Sendable {
        /// Bootstrap a new cluster: every initial member writes the same
        /// membership entries.
        case new
        /// Join a running cluster that already added this member
        /// (`member add`): the log and membership come from the leader.
        case existing
    }

    public var members: [InitialMember]
    public var state: State
    public var token: String
    public var listenPeerURLs: [PeerURL]
    public var advertisedPeerURLs: [String]
    public var heartbeatMilliseconds: Int
    public var electionTimeoutMilliseconds: Int

    public init(
        members: [InitialMember], state: State, token: String, listenPeerURLs: [PeerURL],
        advertisedPeerURLs: [String], heartbeatMilliseconds: Int, electionTimeoutMilliseconds: Int
    ) {
        self.members = members
        self.state = state
        self.token = token
        self.listenPeerURLs = listenPeerURLs
        self.advertisedPeerURLs = advertisedPeerURLs
        self.heartbeatMilliseconds = heartbeatMilliseconds
        self.electionTimeoutMilliseconds = electionTimeoutMilliseconds
    }

    /// etcd's defaults: this member alone on `http://localhost:2380`.
    public static func single(name: String, peerURL: String = "http://localhost:2380") -> ClusterBootstrap {
        ClusterBootstrap(
            members: [InitialMember(name: name, peerURLs: [peerURL])], state: .new, token: "etcd-cluster",
            listenPeerURLs: (try? PeerURL(parsing: peerURL)).map { [$0] } ?? [],
            advertisedPeerURLs: [peerURL],
            heartbeatMilliseconds: 100, electionTimeoutMilliseconds: 1000)
    }
}
