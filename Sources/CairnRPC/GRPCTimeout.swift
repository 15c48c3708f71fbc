import NIOCore

/// The `grpc-timeout` header: at most eight ASCII digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), as gRPC's HTTP/2 protocol defines it.
enum GRPCTimeout {
    static let digitsMax = 8

    /// Parses a header value; `nil` for a malformed one (the caller answers it
    /// with an error rather than guessing a deadline).
    static func parse(_ value: Substring) -> TimeAmount? {
        guard let unit = value.last, value.count >= 2, value.count <= Self.digitsMax + 1 else { return nil }
        let digits = value.dropLast()
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }), let amount = Int64(digits) else { return nil }
        switch unit {
        case "H": return .hours(amount)
        case "M": return .minutes(amount)
        case "S": return .seconds(amount)
        case "m": return .milliseconds(amount)
        case "u": return .microseconds(amount)
        case "n": return .nanoseconds(amount)
        default: return nil
        }
    }

    /// Formats a timeout with the finest unit that keeps it within eight digits.
    static func format(_ timeout: TimeAmount) -> String {
        let nanoseconds = max(timeout.nanoseconds, 0)
        let units: [(Int64, String)] = [
            (1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"),
            (3_600_000_000_000, "H"),
        ]
        for (scale, unit) in units {
            let value = (nanoseconds + scale - 1) / scale
            if value < 100_000_000 { return "\(value)\(unit)" }
        }
        return "99999999H"
    }
}
