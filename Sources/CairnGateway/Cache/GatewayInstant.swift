/// A point on the lead's monotonic clock (for example NIO's
/// `NIODeadline.uptimeNanoseconds`), injected so that the read path's
/// decisions are deterministic and testable without sleeping.
public struct GatewayInstant: Comparable, Hashable, Sendable {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) {
        self.nanoseconds = nanoseconds
    }

    public static func < (lhs: GatewayInstant, rhs: GatewayInstant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    /// `self` moved by `duration` (saturating, so a huge limit cannot overflow).
    public func advanced(by duration: Duration) -> GatewayInstant {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let delta =
            overflow ? Int64.max : scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
        let (sum, sumOverflow) = nanoseconds.addingReportingOverflow(delta)
        return GatewayInstant(nanoseconds: sumOverflow ? (delta > 0 ? .max : .min) : sum)
    }
}
