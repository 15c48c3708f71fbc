import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A long-running `etcdctl` (lock holder, candidate, observer) whose output
/// is read while it runs.
final class EtcdctlProcess: @unchecked Sendable {
    let process: BackgroundProcess

    init(_ member: any EtcdctlTarget, _ arguments: [String]) throws {
        self.process = try BackgroundProcess(
            "etcdctl", member.connectionFlags + ["--dial-timeout=5s"] + arguments, name: "etcdctl")
    }

    var output: String { self.process.log }

    /// Waits until the output has `lines` lines (or 10 s passed); returns it.
    @discardableResult
    func waitForLines(_ lines: Int) async throws -> String {
        for _ in 0..<500 {
            let output = self.output
            if output.split(separator: "\n", omittingEmptySubsequences: false).count > lines { return output }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        return self.output
    }

    /// SIGTERM, as an operator's Ctrl-C: etcdctl unlocks or resigns, then exits.
    func interrupt() -> Int32 {
        self.process.stop(signal: SIGTERM)
        return self.process.process.terminationStatus
    }
}

/// `etcdctl lock` and `etcdctl elect` (clientv3's concurrency recipes over
/// KV, leases and watches) against a real member.
@Suite(.serialized) struct MemberLockElectTests {
    /// The keys under `prefix`, oldest first.
    func contenders(_ member: any EtcdctlTarget, _ prefix: String) throws -> [String] {
        try member.run("get", prefix, "--prefix", "--keys-only", "--sort-by=CREATE", "--order=ASCEND")
            .split(separator: "\n").map(String.init)
    }

    @Test(arguments: Topology.allCases) func secondLockHolderWaitsUntilTheFirstExits(_ topology: Topology)
        async throws
    {
        let member = try topology.start()
        let first = try EtcdctlProcess(member, ["lock", "job"])
        let firstOutput = try await first.waitForLines(2)
        let firstKey = try #require(try self.contenders(member, "job/").first)
        // etcdctl prints the lock's key and its (empty) value.
        #expect(firstOutput == firstKey + "\n\n")
        #expect(firstKey.hasPrefix("job/") && UInt64(firstKey.dropFirst(4), radix: 16) != nil)

        let second = try EtcdctlProcess(member, ["lock", "job"])
        try await Task.sleep(nanoseconds: 700_000_000)
        #expect(second.output == "", "the second holder must wait")
        let keys = try self.contenders(member, "job/")
        #expect(keys.count == 2 && keys.first == firstKey)

        #expect(first.interrupt() == 0)
        let secondOutput = try await second.waitForLines(2)
        #expect(secondOutput == keys[1] + "\n\n")
        #expect(try self.contenders(member, "job/") == [keys[1]])
        #expect(second.interrupt() == 0)
        #expect(try self.contenders(member, "job/").isEmpty)
    }

    @Test(arguments: Topology.allCases) func lockRunsACommandWithTheLockHeld(_ topology: Topology) throws {
        let member = try topology.start()
        // etcdctl runs the command with ETCD_LOCK_KEY set, then unlocks.
        let output = try member.run("lock", "job", "printenv", "ETCD_LOCK_KEY")
        let key = output.trimmingCharacters(in: .newlines)
        #expect(key.hasPrefix("job/") && UInt64(key.dropFirst(4), radix: 16) != nil, "\(output)")
        // The lock is released when the command ends.
        #expect(try self.contenders(member, "job/").isEmpty)
    }

    @Test(arguments: Topology.allCases) func electPrintsTheLeaderAndObserversFollowIt(_ topology: Topology)
        async throws
    {
        let member = try topology.start()
        let observer = try EtcdctlProcess(member, ["elect", "-l", "pick"])
        try await Task.sleep(nanoseconds: 300_000_000)
        let alpha = try EtcdctlProcess(member, ["elect", "pick", "alpha"])
        let alphaOutput = try await alpha.waitForLines(2)
        let alphaKey = try #require(try self.contenders(member, "pick/").first)
        #expect(alphaOutput == alphaKey + "\nalpha\n")

        let beta = try EtcdctlProcess(member, ["elect", "pick", "beta"])
        try await Task.sleep(nanoseconds: 700_000_000)
        #expect(beta.output == "", "the second candidate must wait")
        let betaKey = try self.contenders(member, "pick/")[1]

        // The leader resigns on SIGTERM; the next candidate wins.
        #expect(alpha.interrupt() == 0)
        #expect(try await beta.waitForLines(2) == betaKey + "\nbeta\n")
        let observed = try await observer.waitForLines(4)
        #expect(observed == alphaKey + "\nalpha\n" + betaKey + "\nbeta\n")
        #expect(beta.interrupt() == 0)
        #expect(try self.contenders(member, "pick/").isEmpty)
        _ = observer.interrupt()
    }
}
