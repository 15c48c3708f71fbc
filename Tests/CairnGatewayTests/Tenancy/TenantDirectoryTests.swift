import CairnGateway
import CairnRPC
import Testing

@Suite("Tenant directory: certificate identity to tenant")
struct TenantDirectoryTests {
    let directory: TenantDirectory

    init() throws {
        let file = try TenantsFile(
            yaml: """
                tenants:
                  - {name: alice, identities: ["spiffe://cairn/tenant/alice", alice-cn], prefix: a/, permissions: readwrite}
                  - {name: bob, identities: [bob.example.com, "10.0.0.7"], prefix: b/, permissions: read}
                """)
        self.directory = TenantDirectory(file: file)
    }

    @Test func anIdentityMatchesAUriADnsNameOrTheCommonName() throws {
        let byURI = PeerIdentity(commonName: "someone", uris: ["spiffe://cairn/tenant/alice"])
        #expect(try self.directory.tenant(for: byURI)?.name == "alice")
        let byCommonName = PeerIdentity(commonName: "alice-cn")
        #expect(try self.directory.tenant(for: byCommonName)?.name == "alice")
        let byDNS = PeerIdentity(commonName: nil, dnsNames: ["other.example.com", "bob.example.com"])
        #expect(try self.directory.tenant(for: byDNS)?.name == "bob")
    }

    @Test func matchesAreExact() throws {
        #expect(try self.directory.tenant(for: PeerIdentity(commonName: "alice")) == nil)
        #expect(try self.directory.tenant(for: PeerIdentity(commonName: "ALICE-CN")) == nil)
        let uriPrefix = PeerIdentity(commonName: nil, uris: ["spiffe://cairn/tenant/alice/extra"])
        #expect(try self.directory.tenant(for: uriPrefix) == nil)
        #expect(try self.directory.tenant(for: PeerIdentity(commonName: nil)) == nil)
    }

    @Test func ipAddressesNeverSelectATenant() throws {
        let byIP = PeerIdentity(commonName: nil, ipAddresses: ["10.0.0.7"])
        #expect(try self.directory.tenant(for: byIP) == nil)
    }

    @Test func severalNamesOfOneTenantAreFine() throws {
        let both = PeerIdentity(commonName: "alice-cn", uris: ["spiffe://cairn/tenant/alice"])
        #expect(try self.directory.tenant(for: both)?.name == "alice")
    }

    @Test func aCertificateSelectingTwoTenantsIsRefused() {
        let mixed = PeerIdentity(commonName: "alice-cn", dnsNames: ["bob.example.com"])
        #expect(throws: TenantDirectory.ambiguousIdentity) { try self.directory.tenant(for: mixed) }
        #expect(TenantDirectory.ambiguousIdentity.code == .permissionDenied)
        #expect(!TenantDirectory.ambiguousIdentity.message.contains("alice"))
        #expect(self.directory.tenants(matching: mixed).map(\.name) == ["alice", "bob"])
    }
}
