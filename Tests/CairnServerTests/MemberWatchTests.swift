import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `etcdctl watch` against a real member: live events, prefixes, history
/// from a past revision, prev-kv and compacted watches, with etcd 3.4's
/// exact output.
@Suite(.serialized) struct MemberWatchTests {
    /// Waits until `process`'s output equals `expected` (or times out) and
    /// returns the last output seen.
    private func waitForOutput(_ process: BackgroundProcess, _ expected: String) -> String {
        let deadline = Date().addingTimeInterval(8)
        var seen = process.log
        while seen != expected && Date() < deadline {
            usleep(20_000)
            seen = process.log
        }
        return seen
    }

    /// Puts `w/ready` until the watcher prints it, so the watch is known to
    /// be established; returns the output so far.
    private func waitUntilWatching(_ watcher: BackgroundProcess, _ member: any EtcdctlTarget) throws -> String
    {
        let deadline = Date().addingTimeInterval(8)
        while Date() < deadline {
            _ = try member.run("put", "w/ready", "1")
            usleep(100_000)
            if watcher.log.contains("w/ready") { break }
        }
        usleep(200_000)
        return watcher.log
    }

    @Test(arguments: Topology.allCases) func liveWatchSeesPrefixEventsAfterWrites(_ topology: Topology) throws
    {
        let member = try topology.start()
        let watcher = try BackgroundProcess(
            "etcdctl", member.connectionFlags + ["watch", "--prefix", "w/"], name: "watch")
        defer { watcher.stop() }
        let ready = try waitUntilWatching(watcher, member)
        #expect(try member.run("put", "w/a", "1") == "OK\n")
        #expect(try member.run("put", "other", "x") == "OK\n")
        #expect(try member.run("put", "w/b", "2") == "OK\n")
        #expect(try member.run("del", "w/a") == "1\n")
        let expected = ready + "PUT\nw/a\n1\nPUT\nw/b\n2\nDELETE\nw/a\n\n"
        #expect(waitForOutput(watcher, expected) == expected)
    }

    @Test(arguments: Topology.allCases) func watchFromPastRevisionWithPreviousValues(_ topology: Topology)
        throws
    {
        let member = try topology.start()
        #expect(try member.run("put", "w/a", "1") == "OK\n")
        #expect(try member.run("put", "w/a", "2") == "OK\n")
        #expect(try member.run("del", "w/a") == "1\n")
        let watcher = try BackgroundProcess(
            "etcdctl",
            member.connectionFlags + ["watch", "--prefix", "w/", "--rev", "2", "--prev-kv"],
            name: "watch-history")
        defer { watcher.stop() }
        let expected = "PUT\nw/a\n1\nPUT\nw/a\n1\nw/a\n2\nDELETE\nw/a\n2\nw/a\n\n"
        #expect(waitForOutput(watcher, expected) == expected)
        // Live events follow the history on the same watch.
        #expect(try member.run("put", "w/c", "3") == "OK\n")
        let more = expected + "PUT\nw/c\n3\n"
        #expect(waitForOutput(watcher, more) == more)
    }

    @Test func cleanStopEndsOpenWatchesPromptly() throws {
        let member = try MemberProcess()
        let watcher = try BackgroundProcess(
            "etcdctl", ["--endpoints=\(member.endpoint)", "watch", "--prefix", "w/"], name: "watch-stop")
        defer { watcher.stop() }
        let ready = try waitUntilWatching(watcher, member)
        #expect(try member.run("put", "w/a", "1") == "OK\n")
        #expect(waitForOutput(watcher, ready + "PUT\nw/a\n1\n") == ready + "PUT\nw/a\n1\n")
        member.process.stop(signal: SIGTERM)
        #expect(member.process.process.terminationStatus == 0)
        // The member ended the open watch itself instead of waiting for the grace period.
        #expect(!member.process.log.contains("ended 0 open watch streams"))
        #expect(member.process.log.contains(" open watch streams"))
        #expect(member.process.log.contains("stopped"))
    }

    @Test(arguments: Topology.members) func watchFromCompactedRevisionIsCanceled(_ topology: Topology) throws
    {
        let member = try topology.start()
        for value in ["1", "2", "3"] { #expect(try member.run("put", "k", value) == "OK\n") }
        #expect(try member.run("compaction", "3") == "compacted revision 3\n")
        let output = try TestProcess.run(
            "etcdctl", ["--endpoints=\(member.endpoint)", "watch", "k", "--rev", "1"],
            environment: ["ETCDCTL_API": "3"], timeoutSeconds: 10)
        #expect(output.status != 0)
        #expect(
            (output.stdout + output.stderr).contains(
                "watch was canceled (etcdserver: mvcc: required revision has been compacted)"), "\(output)")
    }
}
