import COpenSSL
import CairnCore
import CairnRPC
import CairnStateMachine
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The auth settings of a member, with etcd's flag defaults.
public struct MemberAuthConfiguration: Sendable {
    /// etcd's `--auth-token-ttl`: an unused simple token expires after this
    /// long; every use restarts the clock, as in etcd.
    public var tokenTTLSeconds: Int64 = 300
    /// PBKDF2-HMAC-SHA256 iterations for new password hashes
    /// (`--auth-password-cost`). Each hash records its own count, so
    /// changing it never invalidates stored passwords.
    public var passwordIterations: Int = PasswordHasher.iterationsDefault
    /// etcd's `--client-cert-auth`: a request without a token acts as the
    /// user named by its verified client certificate's CN.
    public var clientCertAuth = false
    /// Live tokens kept at most; at the bound the token closest to expiry
    /// is dropped (its client re-authenticates, as after a TTL expiry).
    public var tokensMax = 100_000
    /// Password hashes (logins, new passwords) queued or running at most;
    /// beyond it a request is refused with "too many requests" rather than
    /// queued, since each holds a thread-pool thread for tens of ms.
    public var passwordHashesInFlightMax = 64
    /// `--gateway-identities`: certificate identities (CN, SAN URI or SAN
    /// DNS name) of gateways. Only a connection proved to be one of them
    /// may name the user it acts for (`onBehalfOfHeader`).
    public var gatewayIdentities: Set<String> = []

    /// The metadata a gateway names its tenant's user in.
    public static let onBehalfOfHeader = "cairn-on-behalf-of"

    public init() {}

    /// Whether `peer` (the connection's verified certificate) is a gateway's.
    func isGateway(_ peer: PeerIdentity?) -> Bool {
        guard let peer, !self.gatewayIdentities.isEmpty else { return false }
        let names = [peer.commonName].compactMap { $0 } + peer.uris + peer.dnsNames
        return names.contains { self.gatewayIdentities.contains($0) }
    }
}

/// Password hashes with a slow KDF from the system OpenSSL:
/// PBKDF2-HMAC-SHA256 with a per-user random salt.
///
/// Layout: version (1), iterations (4 bytes, big-endian), salt
/// (`saltBytes`), derived key (`keyBytes`). The bytes are opaque to the
/// replicated state: the proposing member hashes, every member stores.
public enum PasswordHasher {
    /// About 85 ms of CPU per hash on this machine class (measured with
    /// `openssl kdf`: 100,000 iterations take 27 ms), near etcd's bcrypt
    /// cost 10; OWASP's 2023 figure for this KDF is 600,000.
    public static let iterationsDefault = 300_000
    /// Bounds on the recorded count: a hash never asks for less than this
    /// protection or for more work than this.
    public static let iterationsMin = 1_000
    public static let iterationsMax = 10_000_000
    static let version: UInt8 = 1
    static let saltBytes = 16
    static let keyBytes = 32

    /// A new hash of `password` with a fresh random salt.
    public static func hash(_ password: String, iterations: Int) -> [UInt8] {
        precondition((iterationsMin...iterationsMax).contains(iterations), "iterations \(iterations)")
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<saltBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var bytes: [UInt8] = [version]
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: iterations >> shift))
        }
        bytes += salt
        bytes += derive(password, salt: salt, iterations: iterations)
        return bytes
    }

    /// Whether `password` matches `hash`; a malformed hash matches nothing.
    /// The comparison takes the same time wherever the bytes differ.
    public static func verify(_ password: String, against hash: [UInt8]) -> Bool {
        guard hash.count == 5 + saltBytes + keyBytes, hash[0] == version else { return false }
        let iterations = hash[1...4].reduce(0) { ($0 << 8) | Int($1) }
        guard (iterationsMin...iterationsMax).contains(iterations) else { return false }
        let salt = Array(hash[5..<(5 + saltBytes)])
        let expected = Array(hash[(5 + saltBytes)...])
        let derived = derive(password, salt: salt, iterations: iterations)
        return derived.withUnsafeBytes { left in
            expected.withUnsafeBytes { right in
                CRYPTO_memcmp(left.baseAddress, right.baseAddress, keyBytes) == 0
            }
        }
    }

    private static func derive(_ password: String, salt: [UInt8], iterations: Int) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: keyBytes)
        let passwordBytes = Array(password.utf8)
        let status = passwordBytes.withUnsafeBufferPointer { passwordBuffer in
            passwordBuffer.withMemoryRebound(to: CChar.self) { passwordChars in
                PKCS5_PBKDF2_HMAC(
                    passwordChars.baseAddress, Int32(passwordChars.count), salt, Int32(salt.count),
                    Int32(iterations), EVP_sha256(), Int32(keyBytes), &key)
            }
        }
        // Only fails on allocation failure inside OpenSSL: nothing sensible
        // to answer, and a zero key must never be compared against.
        precondition(status == 1, "PKCS5_PBKDF2_HMAC failed")
        return key
    }
}

/// etcd's simple tokens: random strings mapped back to their user, each
/// living `tokenTTLSeconds` after its last use on this member. As in etcd,
/// a login is replicated: the member serving Authenticate picks the token
/// (`newToken`) and proposes it, and every member registers it when it
/// applies the login (`register`), so the token works on all members; each
/// member keeps its own time-to-live clock, as etcd's do.
///
/// Properties:
/// 1. At most `tokensMax` tokens are held; `register` at the bound first
///    drops expired tokens, then the one closest to expiry.
/// 2. A token resolves only before its expiry; resolving it restarts its TTL.
final class SimpleTokens: Sendable {
    struct Entry {
        var user: String
        var expiry: NIODeadline
    }

    struct State {
        var tokens: [String: Entry] = [:]
        var nextIndex: UInt64 = 1
    }

    static let randomLetters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
    /// etcd's simple tokens carry 16 random letters; ours carry 24 (about
    /// 137 bits), then ".<index>" as etcd's do.
    static let randomLettersCount = 24

    let ttl: TimeAmount
    let tokensMax: Int
    private let state = NIOLockedValueBox(State())

    init(ttlSeconds: Int64, tokensMax: Int) {
        precondition(ttlSeconds > 0 && tokensMax > 0)
        self.ttl = .seconds(ttlSeconds)
        self.tokensMax = tokensMax
    }

    /// A fresh token string, not yet valid: it becomes valid on every
    /// member once the login that carries it is applied (`register`).
    func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let letters = (0..<Self.randomLettersCount).map { _ in
            Self.randomLetters.randomElement(using: &generator)!
        }
        let prefix = String(decoding: letters, as: UTF8.self)
        let index = self.state.withLockedValue { state in
            defer { state.nextIndex += 1 }
            return state.nextIndex
        }
        return "\(prefix).\(index)"
    }

    /// Makes `token` resolve to `user` for `ttl` from `now` (a login applied).
    func register(token: String, user: String, now: NIODeadline = .now()) {
        self.state.withLockedValue { state in
            if state.tokens[token] == nil && state.tokens.count >= self.tokensMax {
                Self.evict(&state, now: now)
            }
            state.tokens[token] = Entry(user: user, expiry: now + self.ttl)
        }
    }

    /// The user of a live token, restarting its TTL; nil when unknown or expired.
    func user(for token: String, now: NIODeadline = .now()) -> String? {
        self.state.withLockedValue { state in
            guard let entry = state.tokens[token] else { return nil }
            guard now < entry.expiry else {
                state.tokens.removeValue(forKey: token)
                return nil
            }
            state.tokens[token]!.expiry = now + self.ttl
            return entry.user
        }
    }

    /// Drops every token of `user` (deleted, or its password changed).
    func invalidate(user: String) {
        self.state.withLockedValue { state in state.tokens = state.tokens.filter { $0.value.user != user } }
    }

    /// Drops every token (auth disabled).
    func removeAll() {
        self.state.withLockedValue { $0.tokens.removeAll() }
    }

    var count: Int { self.state.withLockedValue { $0.tokens.count } }

    private static func evict(_ state: inout State, now: NIODeadline) {
        state.tokens = state.tokens.filter { now < $0.value.expiry }
        guard state.tokens.count > 0, let oldest = state.tokens.min(by: { $0.value.expiry < $1.value.expiry })
        else { return }
        state.tokens.removeValue(forKey: oldest.key)
    }
}

/// A member's auth shell: the settings and the live tokens, and how a
/// request's credentials become an `AuthIdentity`.
public final class MemberAuth: Sendable {
    /// What a request presented, read from its metadata and connection.
    enum Credential: Sendable {
        case none
        case token(String)
        case certificate(commonName: String)
        /// A gateway acting for this user (checked as if it connected itself).
        case onBehalfOf(user: String)
        /// An on-behalf-of header from a connection that is not a gateway's.
        case refusedOnBehalfOf
    }

    public let configuration: MemberAuthConfiguration
    let tokens: SimpleTokens
    private let passwordHashesInFlight = NIOLockedValueBox(0)
    /// Whether the member applied, once, every entry it knew committed.
    private let caughtUp = NIOLockedValueBox(false)
    /// Members whose applied logins this shell's tokens already follow.
    private let followed = NIOLockedValueBox<Set<ObjectIdentifier>>([])

    public init(configuration: MemberAuthConfiguration = MemberAuthConfiguration()) {
        self.configuration = configuration
        self.tokens = SimpleTokens(
            ttlSeconds: configuration.tokenTTLSeconds, tokensMax: configuration.tokensMax)
    }

    /// Keeps `tokens` in step with the logins and revocations `member`
    /// applies (every member's, not only the one that served the call).
    /// Idempotent per member.
    func follow(_ member: Member) {
        let isNew = self.followed.withLockedValue { $0.insert(ObjectIdentifier(member)).inserted }
        guard isNew else { return }
        let tokens = self.tokens
        member.appliedEffectObservers.withLockedValue { observers in
            observers.append { effects in
                for effect in effects {
                    switch effect {
                    case .tokenAssigned(let token, let user): tokens.register(token: token, user: user)
                    case .tokensRevoked(let user?): tokens.invalidate(user: user)
                    case .tokensRevoked(nil): tokens.removeAll()
                    case .compacted, .leaseGranted, .leaseRevoked: break
                    }
                }
            }
        }
    }

    /// Runs a password KDF on the shared thread pool, off every event loop,
    /// within `passwordHashesInFlightMax`.
    func runPasswordHash<Result: Sendable>(
        on eventLoop: any EventLoop, _ body: @escaping @Sendable () -> Result
    ) -> EventLoopFuture<Result> {
        let admitted = self.passwordHashesInFlight.withLockedValue { inFlight in
            guard inFlight < self.configuration.passwordHashesInFlightMax else { return false }
            inFlight += 1
            return true
        }
        guard admitted else { return eventLoop.makeFailedFuture(CairnError.tooManyRequests) }
        return NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop, body).always { _ in
            self.passwordHashesInFlight.withLockedValue { $0 -= 1 }
        }
    }

    /// Whether checks may use the applied state as it is: true from the
    /// first time `applied` reached `committed` on (after that, the state
    /// trails the log only by entries in flight, as etcd's does).
    func hasCaughtUp(committed: UInt64, applied: UInt64) -> Bool {
        self.caughtUp.withLockedValue { caughtUp in
            if !caughtUp && applied >= committed { caughtUp = true }
            return caughtUp
        }
    }

    /// An on-behalf-of user first (accepted only from a gateway's
    /// certificate, refused from anyone else); then etcd's order: a `token`
    /// header (or `authorization`, as etcd's gateway sends it); with
    /// `clientCertAuth`, else the verified certificate's CN.
    func credential(_ context: RPCContext) -> Credential {
        if let user = context.headers.first(name: MemberAuthConfiguration.onBehalfOfHeader) {
            // Never a silent fallback to the caller's own rights.
            guard self.configuration.isGateway(context.peer), !user.isEmpty else { return .refusedOnBehalfOf }
            return .onBehalfOf(user: user)
        }
        if let token = context.headers.first(name: "token") ?? context.headers.first(name: "authorization") {
            return .token(token)
        }
        if self.configuration.clientCertAuth, let commonName = context.peer?.commonName, !commonName.isEmpty {
            return .certificate(commonName: commonName)
        }
        return .none
    }

    /// The identity for `credential` against the applied auth store (run
    /// on the member's executor). An unknown or expired token is
    /// "invalid auth token" whether or not auth is on, as in etcd; an
    /// identity carries the store's current revision, as etcd's simple
    /// tokens and certificate names do.
    func identity(_ credential: Credential, _ auth: AuthStore) throws(CairnError) -> AuthIdentity? {
        switch credential {
        case .none:
            return nil
        case .token(let token):
            guard let user = self.tokens.user(for: token) else { throw .invalidAuthToken }
            return AuthIdentity(user: user, revision: auth.revision)
        case .certificate(let commonName):
            return AuthIdentity(user: commonName, revision: auth.revision)
        case .onBehalfOf(let user):
            return AuthIdentity(user: user, revision: auth.revision)
        case .refusedOnBehalfOf:
            throw .permissionDenied
        }
    }
}
