import NIOConcurrencyHelpers

/// Certificate rotation without a restart: holds the current `TLSContext`
/// and, on `reload()`, builds a new one from the same configuration (so the
/// files are read again). New connections take `current`; connections
/// already open keep the context they started with. A reload that fails
/// (a half-written file, a key that does not match) keeps the previous
/// context and returns the error for the operator's log.
public final class TLSContextReloader: Sendable {
    public let configuration: TLSConfiguration
    public let role: TLSRole
    private let context: NIOLockedValueBox<TLSContext>

    /// Builds the first context; throws if the files are unusable now.
    public init(configuration: TLSConfiguration, role: TLSRole) throws(TLSError) {
        self.configuration = configuration
        self.role = role
        self.context = NIOLockedValueBox(try TLSContext(configuration: configuration, role: role))
    }

    /// The context for a new connection.
    public var current: TLSContext {
        context.withLockedValue { $0 }
    }

    /// Re-reads the files; on success later connections use them.
    public func reload() throws(TLSError) {
        let fresh = try TLSContext(configuration: configuration, role: role)
        context.withLockedValue { $0 = fresh }
    }
}
