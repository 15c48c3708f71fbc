import CairnAPI
import CairnClient
import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Replicated alarms through `etcdctl` and the Alarm RPC: NOSPACE from the
/// quota, `alarm list`/`disarm` output, and alarms surviving a restart.
@Suite(.serialized) struct MemberAlarmTests {
    /// Fills a member started with a 4 KiB quota until NOSPACE is raised.
    func raiseNoSpace(_ member: MemberProcess) throws -> String {
        let value = String(repeating: "x", count: 3000)
        #expect(try member.run("put", "a", value) == "OK\n")
        #expect(try member.run("put", "b", value) == "OK\n")
        let refused = try member.etcdctl("put", "c", "small")
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("Error: etcdserver: mvcc: database space exceeded"), "\(refused)")
        let list = try member.run("alarm", "list")
        let memberID = try #require(
            list.split(separator: " ").first.flatMap { UInt64($0.dropFirst("memberID:".count)) }, "\(list)")
        // etcdctl prints the message's text form, which ends in a space.
        #expect(list == "memberID:\(memberID) alarm:NOSPACE \n")
        return list
    }

    @Test func noSpaceAlarmSurvivesRestartUntilDisarmed() throws {
        let member = try MemberProcess(extraArguments: ["--quota-backend-bytes", "4096"])
        let list = try self.raiseNoSpace(member)
        // A kill loses nothing: the alarm is in the log (and the snapshot).
        try member.restart(after: SIGKILL)
        #expect(try member.run("alarm", "list") == list)
        #expect(try member.etcdctl("put", "c", "small").stderr.contains("database space exceeded"))
        // Disarm answers the alarms it cleared, as etcd's does.
        #expect(try member.run("alarm", "disarm") == list)
        #expect(try member.run("alarm", "list") == "")
        try member.restart(after: SIGKILL)
        #expect(try member.run("alarm", "list") == "")
        // The restart dropped the small quota: writes go through again.
        #expect(try member.run("put", "c", "small") == "OK\n")
        #expect(try member.run("alarm", "disarm") == "")
    }

    @Test func alarmRPCActivatesAndDeactivatesPerMember() async throws {
        let member = try MemberProcess()
        let client = try EtcdClient(endpoints: [member.endpoint])
        func alarm(
            _ action: Etcdserverpb_AlarmRequest.AlarmAction, _ memberID: UInt64,
            _ type: Etcdserverpb_AlarmType
        )
            async throws -> [String]
        {
            var request = Etcdserverpb_AlarmRequest()
            request.action = action
            request.memberID = memberID
            request.alarm = type
            let response = try await client.rpc.unary(EtcdMaintenance.alarm, request)
            return response.alarms.map { "\($0.memberID):\($0.alarm)" }
        }
        do {
            #expect(try await alarm(.activate, 7, .corrupt) == ["7:corrupt"])
            #expect(try await alarm(.activate, 7, .corrupt) == ["7:corrupt"])
            #expect(try await alarm(.activate, 9, .nospace) == ["9:nospace"])
            #expect(try await alarm(.get, 0, .none) == ["9:nospace", "7:corrupt"])
            #expect(try await alarm(.get, 0, .corrupt) == ["7:corrupt"])
            // Any member's NOSPACE caps writes on this one.
            await #expect(throws: (any Error).self) { try await client.put(key: "k", value: "v") }
            #expect(try await alarm(.deactivate, 8, .nospace) == [])
            #expect(try await alarm(.deactivate, 9, .nospace) == ["9:nospace"])
            try await client.put(key: "k", value: "v")
            #expect(try await alarm(.get, 0, .none) == ["7:corrupt"])
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }
}
