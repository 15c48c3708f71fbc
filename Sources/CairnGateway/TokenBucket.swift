/// A request-rate limit: `rate` tokens per second accumulate up to `burst`;
/// each request takes one or is refused.
///
/// Time is passed in (nanoseconds from any fixed origin), so tests drive it
/// and the gateway reads its clock once per request.
///
/// Properties:
/// 1. `0 ≤ tokens ≤ burst` at all times.
/// 2. Over any interval of length t, at most `burst + rate·t` requests are
///    admitted.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private(set) var tokens: Double
    private var updatedNanoseconds: UInt64

    public init(rate: Double, burst: Double, nowNanoseconds: UInt64) {
        precondition(rate > 0 && burst >= 1, "a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updatedNanoseconds = nowNanoseconds
    }

    /// Takes one token if there is one; false means "refuse this request".
    public mutating func take(nowNanoseconds: UInt64) -> Bool {
        if nowNanoseconds > self.updatedNanoseconds {
            let elapsed = Double(nowNanoseconds - self.updatedNanoseconds) / 1e9
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updatedNanoseconds = nowNanoseconds
        }
        guard self.tokens >= 1 else { return false }
        self.tokens -= 1
        return true
    }
}
