import CairnRPC
import Testing

@testable import CairnGateway

/// The gateway's own small parts: rate buckets, endpoints, retry rules.
@Suite struct GatewayCoreTests {
    @Test func tokenBucketAdmitsTheBurstThenTheRate() {
        var bucket = TokenBucket(rate: 10, burst: 3, nowNanoseconds: 0)
        #expect((0..<5).map { _ in bucket.take(nowNanoseconds: 0) } == [true, true, true, false, false])
        // 100 ms at 10/s is one token; 50 ms more is half of one.
        let later = [100_000_000, 150_000_000, 200_000_000].map { bucket.take(nowNanoseconds: $0) }
        #expect(later == [true, false, true])
        // A long pause refills to the burst, never beyond it.
        #expect(
            (0..<4).map { _ in bucket.take(nowNanoseconds: 60_000_000_000) } == [true, true, true, false])
    }

    @Test func tokenBucketNeverAdmitsMoreThanBurstPlusRateTimesTime() {
        var bucket = TokenBucket(rate: 1_000, burst: 50, nowNanoseconds: 0)
        var admitted = 0
        var now: UInt64 = 0
        var seed: UInt64 = 42
        for _ in 0..<100_000 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            now += seed >> 50  // up to ~16 µs between requests
            if bucket.take(nowNanoseconds: now) { admitted += 1 }
        }
        let bound = 50 + Int(Double(now) / 1e9 * 1_000)
        #expect(admitted <= bound && admitted > bound - 60, "admitted \(admitted), bound \(bound)")
    }

    @Test func endpointsAcceptURLsAndHostPorts() throws {
        #expect(try UpstreamCluster.endpoint("https://10.0.0.1:2379") == "10.0.0.1:2379")
        #expect(try UpstreamCluster.endpoint("http://node-1.example:2379/") == "node-1.example:2379")
        #expect(try UpstreamCluster.endpoint("[::1]:2379") == "[::1]:2379")
        #expect(try UpstreamCluster.endpoint("127.0.0.1:12379") == "127.0.0.1:12379")
        for bad in ["https://10.0.0.1", "10.0.0.1:0", ":2379", "host:port", "https://h:99999"] {
            #expect(throws: RPCStatus.self, "\(bad)") { try UpstreamCluster.endpoint(bad) }
        }
    }

    @Test func writesAreRetriedOnlyWhenTheyNeverLeft() {
        var notSent = RPCStatus(.unavailable, "connection to 127.0.0.1:2379 is unavailable; retrying")
        let sent = notSent
        notSent.requestNotSent = true
        #expect(Gateway.mayRetry(notSent, .ifNotSent))
        #expect(!Gateway.mayRetry(sent, .ifNotSent))
        #expect(Gateway.mayRetry(sent, .idempotent))
        #expect(!Gateway.mayRetry(RPCStatus(.permissionDenied, "etcdserver: permission denied"), .idempotent))
        #expect(Gateway.suggestsLeaderMoved(RPCStatus(.unavailable, "etcdserver: leader changed")))
        #expect(!Gateway.suggestsLeaderMoved(RPCStatus(.invalidArgument, "etcdserver: key is not provided")))
    }
}
