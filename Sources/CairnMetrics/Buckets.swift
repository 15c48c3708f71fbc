/// Histogram bucket bounds as client_golang's `ExponentialBuckets(start,
/// factor, count)`: etcd declares its histograms this way, and operators'
/// dashboards and alerts expect the same `le` values.
public func exponentialBuckets(start: Double, factor: Double, count: Int) -> [Double] {
    precondition(
        start > 0 && factor > 1 && count >= 1, "exponential buckets need start > 0, factor > 1, count >= 1")
    var bounds: [Double] = []
    bounds.reserveCapacity(count)
    var bound = start
    for _ in 0..<count {
        bounds.append(bound)
        bound *= factor
    }
    return bounds
}
