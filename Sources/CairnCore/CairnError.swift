/// gRPC's numeric status codes, as etcd clients see them on the wire.
public enum GRPCStatusCode: Int, Sendable, Hashable {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16
}

/// The one table of errors a member reports to etcd clients.
///
/// Why one table: etcd clients (etcdctl, client libraries) branch on both the
/// gRPC code and the exact message text, so every error a client can see is
/// spelled here once, with etcd's code and etcd's message (etcd's
/// `api/v3rpc/rpctypes/error.go`). Core modules return these cases; shells
/// turn them into gRPC status trailers unchanged.
public enum CairnError: Error, Hashable, Sendable, CustomStringConvertible {
    // MARK: request validation and the key space
    case emptyKey
    case keyNotFound
    case valueProvided
    case leaseProvided
    case ttlZero
    case tooManyOperations
    case duplicateKey
    case invalidSortOption
    case compacted
    case futureRevision
    case noSpace
    case requestTooLarge
    case tooManyRequests

    // MARK: leases
    case leaseNotFound
    case leaseExists
    case leaseTTLTooLarge

    // MARK: membership
    case memberExists
    case peerURLExists
    case memberNotEnoughStarted
    case memberBadURLs
    case memberNotFound
    case memberNotLearner
    case learnerNotReady
    case tooManyLearners

    // MARK: authentication and authorization
    case rootUserNotExist
    case rootRoleNotExist
    case userAlreadyExists
    case userEmpty
    case userNotFound
    case roleAlreadyExists
    case roleNotFound
    case roleEmpty
    case authFailed
    case permissionDenied
    case roleNotGranted
    case permissionNotGranted
    case authNotEnabled
    case invalidAuthToken
    case invalidAuthManagement
    case authOldRevision

    // MARK: cluster health and leadership
    case noLeader
    case notLeader
    case leaderChanged
    case notCapable
    case stopped
    case timeout
    case timeoutDueToLeaderFail
    case timeoutDueToConnectionLost
    case unhealthy
    case corrupt
    case notSupportedForLearner
    case badLeaderTransferee

    // MARK: downgrades
    case clusterVersionUnavailable
    case wrongDowngradeVersionFormat
    case invalidDowngradeTargetVersion
    case downgradeInProcess
    case noInflightDowngrade

    /// The gRPC status code etcd sends for this error.
    public var code: GRPCStatusCode {
        switch self {
        case .emptyKey, .keyNotFound, .valueProvided, .leaseProvided, .ttlZero, .tooManyOperations,
            .duplicateKey, .invalidSortOption, .requestTooLarge, .memberBadURLs, .userEmpty, .roleEmpty,
            .authFailed, .invalidAuthManagement, .authOldRevision, .wrongDowngradeVersionFormat,
            .invalidDowngradeTargetVersion:
            .invalidArgument
        case .compacted, .futureRevision, .leaseTTLTooLarge:
            .outOfRange
        case .noSpace, .tooManyRequests:
            .resourceExhausted
        case .leaseNotFound, .memberNotFound:
            .notFound
        case .leaseExists, .memberExists, .peerURLExists, .memberNotEnoughStarted, .memberNotLearner,
            .learnerNotReady, .tooManyLearners, .rootUserNotExist, .rootRoleNotExist, .userAlreadyExists,
            .userNotFound, .roleAlreadyExists, .roleNotFound, .roleNotGranted, .permissionNotGranted,
            .authNotEnabled, .notLeader, .badLeaderTransferee, .downgradeInProcess, .noInflightDowngrade:
            .failedPrecondition
        case .permissionDenied:
            .permissionDenied
        case .invalidAuthToken:
            .unauthenticated
        case .noLeader, .leaderChanged, .notCapable, .stopped, .timeout, .timeoutDueToLeaderFail,
            .timeoutDueToConnectionLost, .unhealthy, .notSupportedForLearner, .clusterVersionUnavailable:
            .unavailable
        case .corrupt:
            .dataLoss
        }
    }

    /// etcd's exact message text for this error.
    public var message: String {
        switch self {
        case .emptyKey: "etcdserver: key is not provided"
        case .keyNotFound: "etcdserver: key not found"
        case .valueProvided: "etcdserver: value is provided"
        case .leaseProvided: "etcdserver: lease is provided"
        case .ttlZero: "etcdserver: ttl is 0"
        case .tooManyOperations: "etcdserver: too many operations in txn request"
        case .duplicateKey: "etcdserver: duplicate key given in txn request"
        case .invalidSortOption: "etcdserver: invalid sort option"
        case .compacted: "etcdserver: mvcc: required revision has been compacted"
        case .futureRevision: "etcdserver: mvcc: required revision is a future revision"
        case .noSpace: "etcdserver: mvcc: database space exceeded"
        case .requestTooLarge: "etcdserver: request is too large"
        case .tooManyRequests: "etcdserver: too many requests"
        case .leaseNotFound: "etcdserver: requested lease not found"
        case .leaseExists: "etcdserver: lease already exists"
        case .leaseTTLTooLarge: "etcdserver: too large lease TTL"
        case .memberExists: "etcdserver: member ID already exist"
        case .peerURLExists: "etcdserver: Peer URLs already exists"
        case .memberNotEnoughStarted:
            "etcdserver: re-configuration failed due to not enough started members"
        case .memberBadURLs: "etcdserver: given member URLs are invalid"
        case .memberNotFound: "etcdserver: member not found"
        case .memberNotLearner: "etcdserver: can only promote a learner member"
        case .learnerNotReady: "etcdserver: can only promote a learner member which is in sync with leader"
        case .tooManyLearners: "etcdserver: too many learner members in cluster"
        case .rootUserNotExist: "etcdserver: root user does not exist"
        case .rootRoleNotExist: "etcdserver: root user does not have root role"
        case .userAlreadyExists: "etcdserver: user name already exists"
        case .userEmpty: "etcdserver: user name is empty"
        case .userNotFound: "etcdserver: user name not found"
        case .roleAlreadyExists: "etcdserver: role name already exists"
        case .roleNotFound: "etcdserver: role name not found"
        case .roleEmpty: "etcdserver: role name is empty"
        case .authFailed: "etcdserver: authentication failed, invalid user ID or password"
        case .permissionDenied: "etcdserver: permission denied"
        case .roleNotGranted: "etcdserver: role is not granted to the user"
        case .permissionNotGranted: "etcdserver: permission is not granted to the role"
        case .authNotEnabled: "etcdserver: authentication is not enabled"
        case .invalidAuthToken: "etcdserver: invalid auth token"
        case .invalidAuthManagement: "etcdserver: invalid auth management"
        case .authOldRevision: "etcdserver: revision of auth store is old"
        case .noLeader: "etcdserver: no leader"
        case .notLeader: "etcdserver: not leader"
        case .leaderChanged: "etcdserver: leader changed"
        case .notCapable: "etcdserver: not capable"
        case .stopped: "etcdserver: server stopped"
        case .timeout: "etcdserver: request timed out"
        case .timeoutDueToLeaderFail: "etcdserver: request timed out, possibly due to previous leader failure"
        case .timeoutDueToConnectionLost: "etcdserver: request timed out, possibly due to connection lost"
        case .unhealthy: "etcdserver: unhealthy cluster"
        case .corrupt: "etcdserver: corrupt cluster"
        case .notSupportedForLearner: "etcdserver: rpc not supported for learner"
        case .badLeaderTransferee: "etcdserver: bad leader transferee"
        case .clusterVersionUnavailable: "etcdserver: cluster version not found during downgrade"
        case .wrongDowngradeVersionFormat: "etcdserver: wrong downgrade target version format"
        case .invalidDowngradeTargetVersion: "etcdserver: invalid downgrade target version"
        case .downgradeInProcess: "etcdserver: cluster has a downgrade job in progress"
        case .noInflightDowngrade: "etcdserver: no inflight downgrade job"
        }
    }

    /// Every case, so tests and shells can check the table is complete.
    public static let allCases: [CairnError] = [
        .emptyKey, .keyNotFound, .valueProvided, .leaseProvided, .ttlZero, .tooManyOperations,
        .duplicateKey, .invalidSortOption, .compacted, .futureRevision, .noSpace, .requestTooLarge,
        .tooManyRequests, .leaseNotFound, .leaseExists, .leaseTTLTooLarge, .memberExists, .peerURLExists,
        .memberNotEnoughStarted, .memberBadURLs, .memberNotFound, .memberNotLearner, .learnerNotReady,
        .tooManyLearners, .rootUserNotExist, .rootRoleNotExist, .userAlreadyExists, .userEmpty,
        .userNotFound, .roleAlreadyExists, .roleNotFound, .roleEmpty, .authFailed, .permissionDenied,
        .roleNotGranted, .permissionNotGranted, .authNotEnabled, .invalidAuthToken, .invalidAuthManagement,
        .authOldRevision, .noLeader, .notLeader, .leaderChanged, .notCapable, .stopped, .timeout,
        .timeoutDueToLeaderFail, .timeoutDueToConnectionLost, .unhealthy, .corrupt,
        .notSupportedForLearner, .badLeaderTransferee, .clusterVersionUnavailable,
        .wrongDowngradeVersionFormat, .invalidDowngradeTargetVersion, .downgradeInProcess,
        .noInflightDowngrade,
    ]

    public var description: String { message }
}
