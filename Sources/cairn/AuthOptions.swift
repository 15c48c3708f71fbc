import ArgumentParser
import CairnServer

/// etcd's auth flags, with etcd's names and defaults, plus the password KDF
/// cost (etcd's `--bcrypt-cost`; ours is PBKDF2-HMAC-SHA256 from OpenSSL).
struct AuthOptions: ParsableArguments {
    @Option(help: "Specify auth token type: 'simple' (only simple tokens are supported).")
    var authToken = "simple"

    @Option(help: "The lifetime in seconds of an unused simple auth token.")
    var authTokenTtl: Int64 = 300

    @Option(
        help: ArgumentHelp(
            "PBKDF2-HMAC-SHA256 iterations for hashing new passwords.",
            valueName: "iterations"))
    var authPasswordCost = PasswordHasher.iterationsDefault

    @Option(
        help:
            "Comma-separated certificate identities (CN, SAN URI or DNS) of gateways allowed to act on behalf of users."
    )
    var gatewayIdentities = ""

    func validate() throws {
        // etcd's --auth-token is "simple" or "jwt,<options>"; JWT is not built.
        guard self.authToken == "simple" else {
            throw ValidationError("--auth-token: only 'simple' is supported, got '\(self.authToken)'")
        }
        guard self.authTokenTtl > 0 else { throw ValidationError("--auth-token-ttl must be positive") }
        guard (PasswordHasher.iterationsMin...PasswordHasher.iterationsMax).contains(self.authPasswordCost)
        else {
            throw ValidationError(
                "--auth-password-cost must be between \(PasswordHasher.iterationsMin) and \(PasswordHasher.iterationsMax)"
            )
        }
    }

    /// The member's auth settings; `clientCertAuth` comes from the TLS flags.
    func configuration(clientCertAuth: Bool) -> MemberAuthConfiguration {
        var configuration = MemberAuthConfiguration()
        configuration.tokenTTLSeconds = self.authTokenTtl
        configuration.passwordIterations = self.authPasswordCost
        configuration.clientCertAuth = clientCertAuth
        configuration.gatewayIdentities = Set(self.gatewayIdentities.split(separator: ",").map(String.init))
        return configuration
    }
}
