import CairnGateway
import CairnRPC
import Foundation
import Testing

@Suite("Tenants file: parsing and validation")
struct TenantsFileTests {
    static let example = """
        tenants:
          - name: alice
            identities: ["spiffe://cairn/tenant/alice", "alice"]  # SAN URI/DNS or CN
            prefix: "tenants/alice/"
            permissions: readwrite            # or: read
            limits: {requests_per_second: 2000, burst: 4000, watches: 10000,
                     leases: 1000, response_bytes: 4194304}
            cache: ["config/"]                # hot prefixes inside the namespace
          - name: bob
            identities: [bob.example.com]
            prefix: tenants/bob/
            permissions: read
        """

    /// The message of the error loading `yaml` throws (nil if it loads).
    func error(_ yaml: String) -> String? {
        do {
            _ = try TenantsFile(yaml: yaml)
            return nil
        } catch {
            return error.message
        }
    }

    /// One tenant with `fields` replacing or adding to a valid base.
    func oneTenant(_ fields: String) -> String {
        """
        tenants:
          - name: alice
            identities: [alice]
            prefix: a/
            permissions: readwrite
        \(fields)
        """
    }

    @Test func theIssuesExampleLoads() throws {
        let file = try TenantsFile(yaml: Self.example)
        #expect(file.tenants.map(\.name) == ["alice", "bob"])
        let alice = file.tenants[0]
        #expect(alice.identities == ["spiffe://cairn/tenant/alice", "alice"])
        #expect(alice.prefix == "tenants/alice/" && alice.permissions == .readwrite)
        #expect(
            alice.limits
                == TenantLimits(
                    requestsPerSecond: 2000, requestsBurstMax: 4000, watchesMax: 10000, leasesMax: 1000,
                    responseBytesMax: 4_194_304))
        #expect(alice.cachePrefixes == ["config/"])
        #expect(alice.upstreamCachePrefixes == [Data("tenants/alice/config/".utf8)])
        #expect(alice.namespace.prefix == Data("tenants/alice/".utf8))
        #expect(alice.namespace.permissions == .readwrite)
        #expect(alice.leaseTag == Namespace.leaseTag(forTenantNamed: "alice"))
        let bob = file.tenants[1]
        #expect(bob.permissions == .read && bob.namespace.permissions == .read)
        #expect(bob.cachePrefixes.isEmpty)
    }

    @Test func omittedLimitsTakeTheDefaults() throws {
        let file = try TenantsFile(yaml: Self.example)
        let limits = file.tenants[1].limits
        #expect(limits.requestsPerSecond == 1000 && limits.requestsBurstMax == 2000)
        #expect(limits.watchesMax == 10_000 && limits.leasesMax == 1000 && limits.responseBytesMax == 4 << 20)
        let partial = try TenantsFile(yaml: self.oneTenant("    limits: {requests_per_second: 50}"))
        #expect(partial.tenants[0].limits.requestsPerSecond == 50)
        #expect(partial.tenants[0].limits.requestsBurstMax == 100)
    }

    @Test func theDefaultBurstNeverOverflows() {
        #expect(TenantLimits(requestsPerSecond: Int.max).requestsBurstMax == Int.max)
        #expect(TenantLimits(requestsPerSecond: 10, requestsBurstMax: 3).requestsBurstMax == 3)
    }

    @Test func emptyTenantListIsAllowed() throws {
        #expect(try TenantsFile(yaml: "tenants: []").tenants.isEmpty)
    }

    @Test func unknownFieldsAreRefusedWherever() {
        let misspeltLimit = self.error(self.oneTenant("    limits: {requests_per_secnd: 5}"))
        #expect(misspeltLimit?.contains("unknown field `requests_per_secnd`") == true)
        #expect(misspeltLimit?.contains("tenant \"alice\"") == true)
        #expect(misspeltLimit?.contains("line 6") == true)
        let misspeltField = self.error(self.oneTenant("    limts: {burst: 5}"))
        #expect(misspeltField?.contains("unknown field `limts`") == true)
        #expect(
            misspeltField?.contains("allowed: name, identities, prefix, permissions, limits, cache") == true)
        #expect(self.error("tenants: []\nextra: 1")?.contains("unknown field `extra`") == true)
    }

    @Test func requiredFieldsAreNamed() {
        let noName = "tenants:\n  - identities: [a]\n    prefix: a/\n    permissions: read"
        #expect(self.error(noName)?.contains("tenants[0] at line 2: `name` is required") == true)
        let noPrefix = "tenants:\n  - name: a\n    identities: [a]\n    permissions: read"
        #expect(self.error(noPrefix)?.contains("tenant \"a\"") == true)
        #expect(self.error(noPrefix)?.contains("`prefix` is required") == true)
        let noIdentities = "tenants:\n  - name: a\n    prefix: a/\n    permissions: read"
        #expect(self.error(noIdentities)?.contains("`identities` is required") == true)
        let noPermissions = "tenants:\n  - name: a\n    prefix: a/\n    identities: [a]"
        #expect(
            self.error(noPermissions)?.contains("`permissions` is required: `read` or `readwrite`") == true)
        #expect(self.error("")?.contains("the file is empty") == true)
        #expect(self.error("other: 1")?.contains("unknown field `other`") == true)
        #expect(self.error("{}")?.contains("needs a `tenants:` list") == true)
    }

    @Test func valuesOfTheWrongShapeAreRefused() {
        #expect(self.error("tenants: alice")?.contains("`tenants` must be a list") == true)
        #expect(self.error("tenants: [alice]")?.contains("tenants[0] at line 1 must be a mapping") == true)
        let emptyName = "tenants:\n  - name: ''\n    identities: [a]\n    prefix: a/\n    permissions: read"
        #expect(self.error(emptyName)?.contains("`name` must not be empty") == true)
        let nullPrefix = "tenants:\n  - name: a\n    identities: [a]\n    prefix: ~\n    permissions: read"
        #expect(self.error(nullPrefix)?.contains("`prefix` must be a non-empty string") == true)
        let emptyPrefix =
            "tenants:\n  - name: a\n    identities: [a]\n    prefix: \"\"\n    permissions: read"
        #expect(self.error(emptyPrefix)?.contains("`prefix` must not be empty") == true)
        let noIdentities = "tenants:\n  - name: a\n    identities: []\n    prefix: a/\n    permissions: read"
        #expect(self.error(noIdentities)?.contains("`identities` must name at least one") == true)
        let emptyIdentity =
            "tenants:\n  - name: a\n    identities: [a, '']\n    prefix: a/\n    permissions: read"
        #expect(self.error(emptyIdentity)?.contains("`identities[1]` must not be empty") == true)
        let badPermissions =
            "tenants:\n  - name: a\n    identities: [a]\n    prefix: a/\n    permissions: write"
        #expect(
            self.error(badPermissions)?.contains("`permissions` must be `read` or `readwrite`, not `write`")
                == true)
        #expect(
            self.error(self.oneTenant("    cache: ['']"))?.contains("`cache[0]` must not be empty") == true)
        #expect(self.error(self.oneTenant("    cache: config/"))?.contains("`cache` must be a list") == true)
        #expect(self.error("tenants: [")?.contains("not valid YAML") == true)
    }

    @Test func limitsMustBePositiveIntegers() {
        for bad in ["0", "-5", "1.5", "lots", "[1]"] {
            let message = self.error(self.oneTenant("    limits: {burst: \(bad)}"))
            #expect(message?.contains("`limits.burst` must be a positive integer") == true, "\(bad)")
        }
        #expect(self.error(self.oneTenant("    limits: 5"))?.contains("must be a mapping") == true)
    }

    @Test func namesMustBeUniqueAndPlain() {
        let twice = """
            tenants:
              - {name: a, identities: [a], prefix: a/, permissions: read}
              - {name: a, identities: [b], prefix: b/, permissions: read}
            """
        #expect(self.error(twice)?.contains("two tenants are named \"a\"") == true)
        let spaced = "tenants:\n  - {name: 'a b', identities: [a], prefix: a/, permissions: read}"
        #expect(self.error(spaced)?.contains("may hold only letters, digits") == true)
    }

    @Test func identitiesSelectExactlyOneTenant() {
        let shared = """
            tenants:
              - {name: a, identities: [shared, a], prefix: a/, permissions: read}
              - {name: b, identities: [b, shared], prefix: b/, permissions: read}
            """
        #expect(
            self.error(shared)?.contains("tenants \"a\" and \"b\" both claim identity \"shared\"") == true)
        let repeated = "tenants:\n  - {name: a, identities: [x, x], prefix: a/, permissions: read}"
        #expect(self.error(repeated)?.contains("identity \"x\" is listed twice") == true)
    }

    @Test func prefixesMustNotOverlap() {
        let nested = """
            tenants:
              - {name: outer, identities: [o], prefix: tenants/, permissions: read}
              - {name: z, identities: [z], prefix: zzz/, permissions: read}
              - {name: inner, identities: [i], prefix: tenants/inner/, permissions: read}
            """
        let message = self.error(nested)
        #expect(message?.contains("tenant \"inner\" has prefix \"tenants/inner/\"") == true)
        #expect(message?.contains("inside tenant \"outer\"'s prefix \"tenants/\"") == true)
        let unslashed = """
            tenants:
              - {name: a, identities: [a], prefix: alice, permissions: read}
              - {name: b, identities: [b], prefix: alicebob, permissions: read}
            """
        #expect(self.error(unslashed)?.contains("lies inside tenant \"a\"") == true)
        let equal = """
            tenants:
              - {name: a, identities: [a], prefix: p/, permissions: read}
              - {name: b, identities: [b], prefix: p/, permissions: read}
            """
        #expect(self.error(equal)?.contains("have the same prefix \"p/\"") == true)
        let siblings = """
            tenants:
              - {name: a, identities: [a], prefix: tenants/a/, permissions: read}
              - {name: ab, identities: [ab], prefix: tenants/ab/, permissions: read}
            """
        #expect(self.error(siblings) == nil)
    }

    @Test func duplicateCachePrefixesAreRefused() {
        let message = self.error(self.oneTenant("    cache: [config/, config/]"))
        #expect(message?.contains("cache prefix \"config/\" is listed twice") == true)
    }

    @Test func collidingLeaseTagsAreRefused() throws {
        // Find two names with one tag (a birthday search over 31 bits).
        var owners: [UInt32: String] = [:]
        var pair: (String, String)?
        for index in 0..<1_000_000 {
            let name = "t\(index)"
            let tag = Namespace.leaseTag(forTenantNamed: name)
            if let owner = owners[tag] {
                pair = (owner, name)
                break
            }
            owners[tag] = name
        }
        let (first, second) = try #require(pair)
        let yaml = """
            tenants:
              - {name: \(first), identities: [x], prefix: x/, permissions: read}
              - {name: \(second), identities: [y], prefix: y/, permissions: read}
            """
        let message = self.error(yaml)
        #expect(
            message?.contains("tenants \"\(first)\" and \"\(second)\" hash to the same lease tag") == true)
        #expect(message?.contains("rename one of them") == true)
    }

    @Test func loadReadsAFileAndNamesItInErrors() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cairn-tenancy-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("tenants.yaml")
        try Self.example.write(to: good, atomically: true, encoding: .utf8)
        #expect(try TenantsFile.load(path: good.path).tenants.count == 2)
        let bad = directory.appendingPathComponent("bad.yaml")
        try "tenants: [1]".write(to: bad, atomically: true, encoding: .utf8)
        #expect(throws: TenantsFileError.self) { try TenantsFile.load(path: bad.path) }
        do {
            _ = try TenantsFile.load(path: bad.path)
        } catch {
            #expect(error.message.hasPrefix(bad.path))
        }
        do {
            _ = try TenantsFile.load(path: directory.appendingPathComponent("missing.yaml").path)
            Issue.record("a missing file loaded")
        } catch {
            #expect(error.message.contains("cannot read"))
        }
    }
}
