import CairnAPI
import CairnClient
import CairnRPC
import CairnTestSupport
import Foundation
import Testing

/// Auth across a 3-member cluster of real `cairn member`s: logins are
/// replicated (a token from one member works on all, as in etcd), and
/// membership changes, MoveLeader and alarm changes need the root role.
@Suite(.serialized) struct ClusterAuthTests {
    /// root (root role) and alice (read on `foo`), auth enabled, `foo` = bar.
    static func enabledCluster() throws -> ClusterProcess {
        let cluster = try ClusterProcess(size: 3, extraArguments: MemberAuthTests.arguments)
        _ = try cluster.waitForLeader()
        let first = cluster.members[0]
        for arguments in [
            ["user", "add", "root", "--new-user-password=pw"], ["user", "grant-role", "root", "root"],
            ["role", "add", "reader"], ["role", "grant-permission", "reader", "read", "foo"],
            ["user", "add", "alice", "--new-user-password=apw"], ["user", "grant-role", "alice", "reader"],
            ["auth", "enable"], ["--user", "root:pw", "put", "foo", "bar"],
        ] {
            let output = try first.etcdctl(arguments)
            guard output.status == 0 else {
                throw TestFailure("etcdctl \(arguments): \(output.stderr)\n\(cluster.logs)")
            }
        }
        return cluster
    }

    /// The member IDs (hex, as etcdctl prints them) and whether each leads.
    static func roles(_ cluster: ClusterProcess) throws -> [(member: MemberProcess, id: String, leads: Bool)]
    {
        try cluster.members.map { member in
            let status = try Self.status(member)
            return (member, String(status.id, radix: 16), status.id == status.leader)
        }
    }

    /// A member's own ID and the leader it knows (`endpoint status`).
    static func status(_ member: MemberProcess) throws -> (id: UInt64, leader: UInt64) {
        let output = try member.etcdctl(["endpoint", "status", "-w", "json"])
        guard let data = output.stdout.data(using: .utf8),
            let entries = try JSONSerialization.jsonObject(with: data) as? [[String: Any]],
            let status = entries.first?["Status"] as? [String: Any],
            let header = status["header"] as? [String: Any],
            let id = (header["member_id"] as? NSNumber)?.uint64Value,
            let leader = (status["leader"] as? NSNumber)?.uint64Value
        else { throw TestFailure("no status from \(member.endpoint): \(output.stdout)\(output.stderr)") }
        return (id, leader)
    }

    static func token(_ name: String, _ password: String, at client: EtcdClient) async throws -> String {
        var login = Etcdserverpb_AuthenticateRequest()
        login.name = name
        login.password = password
        return try await client.rpc.unary(EtcdAuth.authenticate, login).token
    }

    static func options(token: String) -> RPCCallOptions {
        RPCCallOptions(timeout: .seconds(10), metadata: ["token": token])
    }

    @Test func aTokenFromOneMemberWorksOnEveryMemberUntilItsUserGoes() async throws {
        let cluster = try Self.enabledCluster()
        var clients: [EtcdClient] = []
        for member in cluster.members { clients.append(try EtcdClient(endpoints: [member.endpoint])) }
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("foo".utf8)
        var put = Etcdserverpb_PutRequest()
        put.key = Data("foo".utf8)
        put.value = Data("x".utf8)
        do {
            let alice = try await Self.token("alice", "apw", at: clients[2])
            for client in clients {
                let read = try await client.rpc.unary(EtcdKV.range, get, options: Self.options(token: alice))
                #expect(read.kvs.first?.value == Data("bar".utf8))
                await #expect(throws: RPCStatus(.permissionDenied, "etcdserver: permission denied")) {
                    _ = try await client.rpc.unary(EtcdKV.put, put, options: Self.options(token: alice))
                }
            }
            // root, logged in at member 1, deletes alice at member 2: her
            // token is void on every member.
            let root = try await Self.token("root", "pw", at: clients[0])
            var delete = Etcdserverpb_AuthUserDeleteRequest()
            delete.name = "alice"
            _ = try await clients[1].rpc.unary(
                EtcdAuth.userDelete, delete, options: Self.options(token: root))
            for client in clients {
                await #expect(throws: RPCStatus(.unauthenticated, "etcdserver: invalid auth token")) {
                    _ = try await client.rpc.unary(EtcdKV.range, get, options: Self.options(token: alice))
                }
            }
            // A wrong password still gets no token anywhere.
            await #expect(throws: RPCStatus(.invalidArgument, CairnErrorText.authFailed)) {
                _ = try await Self.token("root", "wrong", at: clients[1])
            }
        } catch {
            Issue.record("\(error)\n\(cluster.logs)")
        }
        for client in clients { await client.shutdown() }
    }

    @Test func membershipChangesAndMoveLeaderNeedRoot() throws {
        let cluster = try Self.enabledCluster()
        let roles = try Self.roles(cluster)
        guard let leader = roles.first(where: \.leads), let follower = roles.first(where: { !$0.leads })
        else { throw TestFailure("no leader and follower: \(roles.map(\.id))\n\(cluster.logs)") }
        let spare = "http://127.0.0.1:\(TestPorts.allocate())"
        let denied = "Error: etcdserver: permission denied"
        for arguments in [
            ["member", "add", "m4", "--peer-urls=\(spare)"], ["member", "remove", leader.id],
            ["member", "update", follower.id, "--peer-urls=\(spare)"], ["member", "promote", follower.id],
        ] {
            for member in [leader.member, follower.member] {
                let refused = try member.etcdctl(["--user", "alice:apw"] + arguments)
                #expect(MemberAuthTests.errorLine(refused) == denied, "\(arguments): \(refused)")
                let anonymous = try member.etcdctl(arguments)
                #expect(
                    MemberAuthTests.errorLine(anonymous) == "Error: etcdserver: user name is empty",
                    "\(arguments): \(anonymous)")
            }
        }
        let move = try leader.member.etcdctl(["--user", "alice:apw", "move-leader", follower.id])
        #expect(MemberAuthTests.errorLine(move) == denied, "\(move)")
        #expect(try leader.member.run("--user", "alice:apw", "member", "list").contains(leader.id))

        // root adds a learner through a follower (forwarded to the leader
        // with root's token) and removes it again.
        let added = try follower.member.etcdctl([
            "--user", "root:pw", "member", "add", "m4", "--learner", "--peer-urls=\(spare)",
        ])
        #expect(added.status == 0, "\(added.stderr)\n\(cluster.logs)")
        let learnerID = added.stdout.split(separator: " ").dropFirst(1).first.map(String.init) ?? ""
        let removed = try follower.member.etcdctl(["--user", "root:pw", "member", "remove", learnerID])
        #expect(
            removed.status == 0 && removed.stdout.contains("removed from cluster"),
            "\(added.stdout)\(removed)")

        // root moves the leadership.
        let moved = try leader.member.etcdctl(["--user", "root:pw", "move-leader", follower.id])
        #expect(moved.status == 0 && moved.stdout.contains("Leadership transferred"), "\(moved)")
    }

    /// Raising or clearing an alarm needs root (a raised NOSPACE stops
    /// every write); listing alarms does not.
    @Test func alarmChangesNeedRoot() async throws {
        let member = try MemberAuthTests.enabledMember()
        let memberID = try Self.status(member).id
        let client = try EtcdClient(endpoints: [member.endpoint])
        do {
            var raise = Etcdserverpb_AlarmRequest()
            raise.action = .activate
            raise.alarm = .nospace
            raise.memberID = memberID
            let alice = try await Self.token("alice", "apw", at: client)
            await #expect(throws: RPCStatus(.permissionDenied, "etcdserver: permission denied")) {
                _ = try await client.rpc.unary(
                    EtcdMaintenance.alarm, raise, options: Self.options(token: alice))
            }
            let root = try await Self.token("root", "pw", at: client)
            let raised = try await client.rpc.unary(
                EtcdMaintenance.alarm, raise, options: Self.options(token: root))
            #expect(raised.alarms.count == 1)
        } catch {
            Issue.record("\(error)\n\(member.logs)")
        }
        await client.shutdown()
        #expect(
            try member.run("--user", "alice:apw", "alarm", "list") == "memberID:\(memberID) alarm:NOSPACE \n")
        let disarm = try member.etcdctl(["--user", "alice:apw", "alarm", "disarm"])
        #expect(MemberAuthTests.errorLine(disarm) == "Error: etcdserver: permission denied", "\(disarm)")
        #expect(try member.run("--user", "root:pw", "alarm", "disarm").contains("NOSPACE"))
        #expect(try member.run("--user", "root:pw", "alarm", "list") == "")
    }
}

/// etcd's texts the tests compare with.
enum CairnErrorText {
    static let authFailed = "etcdserver: authentication failed, invalid user ID or password"
}

/// A cluster whose client URLs are `https://`: a follower forwards what
/// only the leader does (membership changes, lease keep-alives) to the
/// leader's client URL over TLS, with its own certificate.
@Suite(.serialized) struct ClusterTLSForwardingTests {
    /// Three members serving https://, all with `certificate`.
    static func startCluster(certificate: CertificatePair, ca: String, extraArguments: [String] = []) throws
        -> [MemberProcess]
    {
        let ports = (0..<3).map { _ in (client: TestPorts.allocate(), peer: TestPorts.allocate()) }
        let initialCluster = ports.enumerated().map { "m\($0 + 1)=http://127.0.0.1:\($1.peer)" }.joined(
            separator: ",")
        let members = try ports.enumerated().map { index, port in
            try MemberProcess(
                name: "m\(index + 1)", port: port.client, peerPort: port.peer,
                clusterArguments: [
                    "--initial-cluster", initialCluster, "--initial-cluster-token", "tls-\(ports[0].client)",
                    "--initial-advertise-peer-urls", "http://127.0.0.1:\(port.peer)",
                ],
                extraArguments: [
                    "--listen-client-urls", "https://127.0.0.1:\(port.client)", "--cert-file",
                    certificate.certificateFile, "--key-file", certificate.keyFile, "--trusted-ca-file", ca,
                    "--client-cert-auth",
                ] + extraArguments, waitUntilListening: false)
        }
        for member in members { try TestPorts.waitUntilListening(member.port) }
        return members
    }

    /// The first member whose status names another member as leader.
    static func follower(
        of members: [MemberProcess], etcdctl: (MemberProcess, [String]) throws -> TestProcess.Output
    ) throws -> MemberProcess? {
        for _ in 0..<100 {
            for member in members {
                let status = try etcdctl(member, ["endpoint", "status", "-w", "json"])
                guard let data = status.stdout.data(using: .utf8),
                    let entries = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]],
                    let fields = entries.first?["Status"] as? [String: Any],
                    let header = fields["header"] as? [String: Any],
                    let id = (header["member_id"] as? NSNumber)?.uint64Value,
                    let leader = (fields["leader"] as? NSNumber)?.uint64Value, leader != 0, leader != id
                else { continue }
                return member
            }
            usleep(200_000)
        }
        return nil
    }

    /// etcdctl over https to one member, as `client`.
    static func etcdctl(_ member: MemberProcess, ca: String, client: CertificatePair, _ arguments: [String])
        throws -> TestProcess.Output
    {
        try TestProcess.run(
            "etcdctl",
            [
                "--endpoints=https://127.0.0.1:\(member.port)", "--dial-timeout=15s", "--command-timeout=20s",
                "--cacert=\(ca)", "--cert=\(client.certificateFile)", "--key=\(client.keyFile)",
            ] + arguments, environment: ["ETCDCTL_API": "3"], timeoutSeconds: 60)
    }

    /// With auth on and `--client-cert-auth`, a follower forwards a
    /// certificate user as an on-behalf-of user; the leader accepts it
    /// because the members' certificate is in its `--gateway-identities`,
    /// and checks that user: root may, alice may not.
    @Test func certificateUsersAreForwardedOnBehalfOf() throws {
        let authority = try TestCertificateAuthority()
        let certificate = try authority.member("member")
        let root = try authority.client("root")
        let alice = try authority.client("alice")
        let ca = authority.certificateFile
        let members = try Self.startCluster(
            certificate: certificate, ca: ca,
            extraArguments: ["--gateway-identities", "member"] + MemberAuthTests.arguments)
        let logs = { members.map { "--- \($0.name):\n\($0.process.log)" }.joined(separator: "\n") }
        let asRoot = { (member: MemberProcess, arguments: [String]) in
            try Self.etcdctl(member, ca: ca, client: root, arguments)
        }
        for arguments in [
            ["user", "add", "root", "--new-user-password=pw"], ["user", "grant-role", "root", "root"],
            ["user", "add", "alice", "--no-password"], ["auth", "enable"],
        ] {
            let output = try asRoot(members[0], arguments)
            #expect(output.status == 0, "\(arguments): \(output.stderr)\n\(logs())")
        }
        guard let follower = try Self.follower(of: members, etcdctl: asRoot) else {
            throw TestFailure("no follower with a leader\n\(logs())")
        }
        let spare = "http://127.0.0.1:\(TestPorts.allocate())"
        let add = ["member", "add", "m4", "--learner", "--peer-urls=\(spare)"]
        let refused = try Self.etcdctl(follower, ca: ca, client: alice, add)
        #expect(MemberAuthTests.errorLine(refused) == "Error: etcdserver: permission denied", "\(refused)")
        let added = try asRoot(follower, add)
        #expect(added.status == 0, "\(added.stderr)\n\(logs())")
        let learnerID = added.stdout.split(separator: " ").dropFirst(1).first.map(String.init) ?? ""
        let removed = try asRoot(follower, ["member", "remove", learnerID])
        #expect(
            removed.status == 0 && removed.stdout.contains("removed from cluster"), "\(removed)\n\(logs())")
    }

    @Test func followersForwardToTheLeaderOverTLS() throws {
        let authority = try TestCertificateAuthority()
        let certificate = try authority.member("member")
        let admin = try authority.client("admin")
        let ca = authority.certificateFile
        let members = try Self.startCluster(certificate: certificate, ca: ca)
        let logs = { members.map { "--- \($0.name):\n\($0.process.log)" }.joined(separator: "\n") }
        let etcdctl = { (member: MemberProcess, arguments: [String]) in
            try Self.etcdctl(member, ca: ca, client: admin, arguments)
        }
        guard let follower = try Self.follower(of: members, etcdctl: etcdctl) else {
            throw TestFailure("no follower with a leader\n\(logs())")
        }
        let spare = "http://127.0.0.1:\(TestPorts.allocate())"
        let added = try etcdctl(follower, ["member", "add", "m4", "--learner", "--peer-urls=\(spare)"])
        #expect(added.status == 0, "\(added.stderr)\n\(logs())")
        let learnerID = added.stdout.split(separator: " ").dropFirst(1).first.map(String.init) ?? ""
        let removed = try etcdctl(follower, ["member", "remove", learnerID])
        #expect(
            removed.status == 0 && removed.stdout.contains("removed from cluster"), "\(removed)\n\(logs())")

        let grant = try etcdctl(follower, ["lease", "grant", "60"])
        let lease = grant.stdout.split(separator: " ").dropFirst(1).first.map(String.init) ?? ""
        let keptAlive = try etcdctl(follower, ["lease", "keep-alive", "--once", lease])
        #expect(
            keptAlive.status == 0 && keptAlive.stdout.contains("keepalived with TTL"),
            "\(keptAlive)\n\(logs())")
    }
}
