import CairnAPI
import CairnClient
import CairnRPC
import CairnTestSupport
import Foundation
import Testing

/// etcd's auth flows through the real `etcdctl` 3.4 against a real member;
/// every expected text was recorded from etcd 3.4 doing the same.
@Suite(.serialized) struct MemberAuthTests {
    /// A cheap KDF keeps the many `--user` logins of a test fast.
    static let arguments = ["--auth-password-cost", "1000"]

    /// The last line etcdctl writes on failure (grpc-go logs come before it).
    static func errorLine(_ output: TestProcess.Output) -> String {
        output.stderr.split(separator: "\n").last.map(String.init) ?? ""
    }

    /// root with the root role, a role `reader` (read on `foo`, readwrite on
    /// the prefix `dir/`) held by `alice`, auth enabled.
    static func enabledMember() throws -> MemberProcess {
        let member = try MemberProcess(extraArguments: Self.arguments)
        #expect(try member.run("role", "add", "root") == "Role root created\n")
        #expect(try member.run("user", "add", "root", "--new-user-password=pw") == "User root created\n")
        #expect(try member.run("user", "grant-role", "root", "root") == "Role root is granted to user root\n")
        #expect(try member.run("role", "add", "reader") == "Role reader created\n")
        #expect(
            try member.run("role", "grant-permission", "reader", "read", "foo") == "Role reader updated\n")
        #expect(
            try member.run("role", "grant-permission", "reader", "readwrite", "--prefix", "dir/")
                == "Role reader updated\n")
        #expect(try member.run("user", "add", "alice", "--new-user-password=apw") == "User alice created\n")
        #expect(
            try member.run("user", "grant-role", "alice", "reader")
                == "Role reader is granted to user alice\n")
        #expect(try member.run("auth", "enable") == "Authentication Enabled\n")
        return member
    }

    @Test func enableNeedsRootWithRootRole() throws {
        let member = try MemberProcess(extraArguments: Self.arguments)
        let noRoot = try member.etcdctl("auth", "enable")
        #expect(noRoot.status == 1)
        #expect(Self.errorLine(noRoot) == "Error: etcdserver: root user does not exist", "\(noRoot)")
        _ = try member.run("user", "add", "root", "--new-user-password=pw")
        let duplicate = try member.etcdctl("user", "add", "root", "--new-user-password=x")
        #expect(Self.errorLine(duplicate) == "Error: etcdserver: user name already exists", "\(duplicate)")
        // Told "root user does not have root role", etcdctl adds the role,
        // grants it and enables again, as with etcd.
        #expect(try member.run("auth", "enable") == "Authentication Enabled\n")
        #expect(try member.run("--user", "root:pw", "role", "list") == "root\n")
        let anonymous = try member.etcdctl("user", "add", "bob", "--new-user-password=x")
        #expect(Self.errorLine(anonymous) == "Error: etcdserver: user name is empty", "\(anonymous)")
    }

    @Test func rootReadsAndWritesAndLimitedUsersAreConfined() throws {
        let member = try Self.enabledMember()
        let anonymous = try member.etcdctl("get", "foo")
        #expect(anonymous.status == 1)
        #expect(Self.errorLine(anonymous) == "Error: etcdserver: user name is empty", "\(anonymous)")
        #expect(try member.run("--user", "root:pw", "put", "foo", "bar") == "OK\n")
        #expect(try member.run("--user", "root:pw", "get", "foo") == "foo\nbar\n")
        #expect(try member.run("--user", "alice:apw", "get", "foo") == "foo\nbar\n")
        let denied = try member.etcdctl("--user", "alice:apw", "put", "foo", "baz")
        #expect(denied.status == 1)
        #expect(Self.errorLine(denied) == "Error: etcdserver: permission denied", "\(denied)")
        // The readwrite prefix is writable; a range beyond it is not readable.
        #expect(try member.run("--user", "alice:apw", "put", "dir/a", "1") == "OK\n")
        #expect(try member.run("--user", "alice:apw", "get", "--prefix", "dir/") == "dir/a\n1\n")
        let wide = try member.etcdctl("--user", "alice:apw", "get", "--prefix", "d")
        #expect(Self.errorLine(wide) == "Error: etcdserver: permission denied", "\(wide)")
        // A txn is checked op by op, compares included.
        let txn = try member.etcdctl(
            ["--user", "alice:apw", "txn"], input: "value(\"foo\") = \"bar\"\n\nput dir/b 2\n\nput foo x\n\n")
        #expect(Self.errorLine(txn) == "Error: etcdserver: permission denied", "\(txn)")
        #expect(try member.run("--user", "root:pw", "get", "dir/b") == "")
    }

    @Test func watchLeaseLockAndMaintenanceAreChecked() throws {
        let member = try Self.enabledMember()
        // A watch outside the user's ranges is created and canceled at once.
        let watch = try member.etcdctl("--user", "alice:apw", "watch", "bar")
        #expect(
            watch.stderr.contains(
                "watch was canceled (rpc error: code = PermissionDenied desc = etcdserver: permission denied)\n"
            ),
            "\(watch)")
        #expect(Self.errorLine(watch) == "Error: watch is canceled by the server")
        // Revoking a lease needs write on every key attached to it.
        let grant = try member.run("--user", "root:pw", "lease", "grant", "100")
        let lease = String(grant.split(separator: " ")[1])
        #expect(try member.run("--user", "root:pw", "put", "foo", "v", "--lease=\(lease)") == "OK\n")
        let revoke = try member.etcdctl("--user", "alice:apw", "lease", "revoke", lease)
        #expect(
            Self.errorLine(revoke) == "Error: failed to revoke lease (etcdserver: permission denied)",
            "\(revoke)")
        // Locks live under the lock's name: allowed in the user's prefix only.
        #expect(try member.run("--user", "alice:apw", "lock", "dir/l", "echo", "held") == "held\n")
        let lock = try member.etcdctl("--user", "alice:apw", "lock", "other", "echo", "held")
        #expect(Self.errorLine(lock) == "Error: etcdserver: permission denied", "\(lock)")
        // Maintenance needs root; etcd 3.4 answers with its unmapped text.
        let hash = try member.etcdctl("--user", "alice:apw", "endpoint", "hashkv")
        #expect(
            Self.errorLine(hash) == "Error: rpc error: code = Unknown desc = auth: permission denied",
            "\(hash)")
        #expect(try member.run("--user", "root:pw", "endpoint", "hashkv").contains(member.endpoint))
        let path = member.dataDirectory.path + "-auth-snapshot.db"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let snapshot = try member.etcdctl("--user", "alice:apw", "snapshot", "save", path)
        #expect(
            Self.errorLine(snapshot) == "Error: rpc error: code = Unknown desc = auth: permission denied",
            "\(snapshot)")
    }

    @Test func wrongPasswordAndUnknownUserFailAlike() throws {
        let member = try Self.enabledMember()
        for credentials in ["alice:wrong", "nobody:x"] {
            let output = try member.etcdctl("--user", credentials, "get", "foo")
            #expect(output.status == 2)
            #expect(
                Self.errorLine(output)
                    == "Error: etcdserver: authentication failed, invalid user ID or password",
                "\(output)")
        }
    }

    @Test func administrationNeedsRootAndProtectsRoot() throws {
        let member = try Self.enabledMember()
        #expect(
            try member.run("--user", "root:pw", "role", "get", "reader")
                == "Role reader\nKV Read:\n\t[dir/, dir0) (prefix dir/)\n\tfoo\nKV Write:\n\t[dir/, dir0) (prefix dir/)\n"
        )
        #expect(try member.run("--user", "root:pw", "user", "get", "alice") == "User: alice\nRoles: reader\n")
        #expect(
            try member.run("--user", "alice:apw", "user", "get", "alice") == "User: alice\nRoles: reader\n")
        #expect(try member.run("--user", "root:pw", "user", "list") == "alice\nroot\n")
        #expect(try member.run("--user", "root:pw", "role", "list") == "reader\nroot\n")
        let listing = try member.etcdctl("--user", "alice:apw", "user", "list")
        #expect(Self.errorLine(listing) == "Error: etcdserver: permission denied", "\(listing)")
        for arguments in [
            ["user", "delete", "root"], ["role", "delete", "root"], ["user", "revoke-role", "root", "root"],
        ] {
            let refused = try member.etcdctl(["--user", "root:pw"] + arguments)
            #expect(Self.errorLine(refused) == "Error: etcdserver: invalid auth management", "\(refused)")
        }
    }

    @Test func disableOpensTheStoreAgain() throws {
        let member = try Self.enabledMember()
        #expect(try member.run("--user", "root:pw", "put", "foo", "bar") == "OK\n")
        #expect(try member.run("--user", "root:pw", "auth", "disable") == "Authentication Disabled\n")
        #expect(try member.run("get", "foo") == "foo\nbar\n")
        // A user login against a disabled store is ignored by the client.
        #expect(try member.run("--user", "root:pw", "get", "foo") == "foo\nbar\n")
    }

    @Test func authSurvivesRestart() throws {
        let member = try Self.enabledMember()
        try member.restart(after: SIGKILL, extraArguments: Self.arguments)
        #expect(try member.run("--user", "alice:apw", "get", "foo") == "")
        let denied = try member.etcdctl("--user", "alice:apw", "put", "foo", "baz")
        #expect(Self.errorLine(denied) == "Error: etcdserver: permission denied", "\(denied)")
    }

    /// With `--client-cert-auth` and no token, the certificate's CN is the
    /// user, as in etcd; a no-password user can only come in this way.
    @Test func certificateCommonNameIsTheUser() throws {
        let authority = try TestCertificateAuthority()
        let server = try authority.member("member1")
        let root = try authority.client("root")
        let alice = try authority.client("alice")
        let stranger = try authority.client("carol")
        let member = try TLSMemberProcess(
            tlsArguments: [
                "--cert-file", server.certificateFile, "--key-file", server.keyFile, "--trusted-ca-file",
                authority.certificateFile, "--client-cert-auth",
            ] + Self.arguments)
        let ca = authority.certificateFile
        func run(_ arguments: [String], as client: CertificatePair) throws -> TestProcess.Output {
            try member.etcdctl(arguments, caFile: ca, client: client)
        }
        for arguments in [
            ["user", "add", "root", "--new-user-password=pw"], ["user", "grant-role", "root", "root"],
            ["role", "add", "reader"], ["role", "grant-permission", "reader", "read", "foo"],
            ["user", "add", "alice", "--no-password"], ["user", "grant-role", "alice", "reader"],
            ["auth", "enable"], ["put", "foo", "bar"],
        ] {
            let output = try run(arguments, as: root)
            #expect(output.status == 0, "\(arguments): \(output.stderr)\n\(member.process.log)")
        }
        #expect(try run(["get", "foo"], as: alice).stdout == "foo\nbar\n")
        #expect(
            Self.errorLine(try run(["put", "foo", "x"], as: alice)) == "Error: etcdserver: permission denied")
        // A CN that names no user gets nothing.
        #expect(
            Self.errorLine(try run(["get", "foo"], as: stranger)) == "Error: etcdserver: permission denied")
        // A no-password user cannot log in with a password (etcd 3.4's
        // unmapped error text).
        let login = try run(["--user", "alice:x", "get", "foo"], as: stranger)
        #expect(
            Self.errorLine(login)
                == "Error: rpc error: code = Unknown desc = auth: authentication failed, password was given for no password user",
            "\(login)")
    }

    /// A gateway's certificate may name the user it acts for; the member
    /// checks that user's permissions. Any other certificate naming a user
    /// is refused: it gains neither that user's rights nor keeps its own.
    @Test func onlyGatewaysActOnBehalfOfUsers() async throws {
        let authority = try TestCertificateAuthority()
        let server = try authority.member("member1")
        let root = try authority.client("root")
        let gateway = try authority.gateway("gateway1")
        let member = try TLSMemberProcess(
            tlsArguments: [
                "--cert-file", server.certificateFile, "--key-file", server.keyFile, "--trusted-ca-file",
                authority.certificateFile, "--client-cert-auth", "--gateway-identities", "gateway1",
            ] + Self.arguments)
        for arguments in [
            ["user", "add", "root", "--new-user-password=pw"], ["user", "grant-role", "root", "root"],
            ["role", "add", "reader"], ["role", "grant-permission", "reader", "read", "foo"],
            ["user", "add", "alice", "--no-password"], ["user", "grant-role", "alice", "reader"],
            ["auth", "enable"], ["put", "foo", "bar"],
        ] {
            let output = try member.etcdctl(arguments, caFile: authority.certificateFile, client: root)
            #expect(output.status == 0, "\(arguments): \(output.stderr)\n\(member.process.log)")
        }
        func client(_ pair: CertificatePair) throws -> EtcdClient {
            var configuration = EtcdClientConfiguration()
            configuration.tls = EtcdClientTLS(
                trustedCAFile: authority.certificateFile, certificateFile: pair.certificateFile,
                keyFile: pair.keyFile)
            return try EtcdClient(endpoints: [member.endpoint], configuration: configuration)
        }
        func onBehalfOf(_ user: String) -> RPCCallOptions {
            RPCCallOptions(timeout: .seconds(10), metadata: ["cairn-on-behalf-of": user])
        }
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("foo".utf8)
        var put = Etcdserverpb_PutRequest()
        put.key = Data("foo".utf8)
        put.value = Data("x".utf8)
        let asGateway = try client(gateway)
        let asRoot = try client(root)
        do {
            // The gateway acting for alice: alice's rights exactly.
            let read = try await asGateway.rpc.unary(EtcdKV.range, get, options: onBehalfOf("alice"))
            #expect(read.kvs.first?.value == Data("bar".utf8))
            await #expect(throws: RPCStatus(.permissionDenied, "etcdserver: permission denied")) {
                _ = try await asGateway.rpc.unary(EtcdKV.put, put, options: onBehalfOf("alice"))
            }
            // root's own certificate naming alice: refused, not root's rights.
            await #expect(throws: RPCStatus(.permissionDenied, "etcdserver: permission denied")) {
                _ = try await asRoot.rpc.unary(EtcdKV.range, get, options: onBehalfOf("alice"))
            }
            // Without the header root is root.
            #expect(try await asRoot.rpc.unary(EtcdKV.put, put).header.revision > 0)
        } catch {
            Issue.record("\(error)\n\(member.process.log)")
        }
        await asGateway.shutdown()
        await asRoot.shutdown()
    }

    /// Auth changes are replicated: made through one member, they hold on
    /// every member (logins too: `ClusterAuthTests`).
    @Test func authIsReplicatedToEveryMember() throws {
        let cluster = try ClusterProcess(size: 3, extraArguments: Self.arguments)
        _ = try cluster.waitForLeader()
        let first = cluster.members[0]
        _ = try first.run("user", "add", "root", "--new-user-password=pw")
        _ = try first.run("user", "grant-role", "root", "root")
        _ = try first.run("role", "add", "reader")
        _ = try first.run("role", "grant-permission", "reader", "read", "foo")
        _ = try first.run("user", "add", "alice", "--new-user-password=apw")
        _ = try first.run("user", "grant-role", "alice", "reader")
        #expect(try first.run("auth", "enable") == "Authentication Enabled\n")
        for (index, member) in cluster.members.enumerated() {
            #expect(try member.run("--user", "root:pw", "put", "foo", "v\(index)") == "OK\n")
            #expect(
                try member.run("--user", "alice:apw", "get", "foo", "--print-value-only") == "v\(index)\n")
            let denied = try member.etcdctl("--user", "alice:apw", "put", "foo", "x")
            #expect(Self.errorLine(denied) == "Error: etcdserver: permission denied", "\(denied)")
            let anonymous = try member.etcdctl("get", "foo")
            #expect(Self.errorLine(anonymous) == "Error: etcdserver: user name is empty", "\(anonymous)")
        }
    }
}
