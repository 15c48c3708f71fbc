import CairnCore
import Testing

@Suite struct ErrorTableTests {
    @Test func keySpaceErrorsCarryEtcdCodesAndMessages() {
        let expected: [(CairnError, GRPCStatusCode, String)] = [
            (.emptyKey, .invalidArgument, "etcdserver: key is not provided"),
            (.keyNotFound, .invalidArgument, "etcdserver: key not found"),
            (.valueProvided, .invalidArgument, "etcdserver: value is provided"),
            (.leaseProvided, .invalidArgument, "etcdserver: lease is provided"),
            (.tooManyOperations, .invalidArgument, "etcdserver: too many operations in txn request"),
            (.duplicateKey, .invalidArgument, "etcdserver: duplicate key given in txn request"),
            (.compacted, .outOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (.futureRevision, .outOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (.noSpace, .resourceExhausted, "etcdserver: mvcc: database space exceeded"),
            (.requestTooLarge, .invalidArgument, "etcdserver: request is too large"),
            (.tooManyRequests, .resourceExhausted, "etcdserver: too many requests"),
            (.leaseNotFound, .notFound, "etcdserver: requested lease not found"),
            (.leaseExists, .failedPrecondition, "etcdserver: lease already exists"),
            (.leaseTTLTooLarge, .outOfRange, "etcdserver: too large lease TTL"),
            (.permissionDenied, .permissionDenied, "etcdserver: permission denied"),
            (.invalidAuthToken, .unauthenticated, "etcdserver: invalid auth token"),
            (.noLeader, .unavailable, "etcdserver: no leader"),
            (.notLeader, .failedPrecondition, "etcdserver: not leader"),
            (.timeout, .unavailable, "etcdserver: request timed out"),
            (.corrupt, .dataLoss, "etcdserver: corrupt cluster"),
            (.memberNotFound, .notFound, "etcdserver: member not found"),
        ]
        for (error, code, message) in expected {
            #expect(error.code == code, "\(error)")
            #expect(error.message == message)
        }
    }

    @Test func numericCodesAreGRPCs() {
        #expect(GRPCStatusCode.invalidArgument.rawValue == 3)
        #expect(GRPCStatusCode.notFound.rawValue == 5)
        #expect(GRPCStatusCode.permissionDenied.rawValue == 7)
        #expect(GRPCStatusCode.resourceExhausted.rawValue == 8)
        #expect(GRPCStatusCode.failedPrecondition.rawValue == 9)
        #expect(GRPCStatusCode.outOfRange.rawValue == 11)
        #expect(GRPCStatusCode.unavailable.rawValue == 14)
        #expect(GRPCStatusCode.unauthenticated.rawValue == 16)
    }

    @Test func everyMessageIsEtcdsAndUnique() {
        var seen = Set<String>()
        for error in CairnError.allCases {
            #expect(error.message.hasPrefix("etcdserver: "), "\(error)")
            #expect(seen.insert(error.message).inserted, "duplicate message \(error.message)")
            #expect(error.code != .ok)
        }
        #expect(CairnError.allCases.count == 57)
    }
}
