import Foundation
import Histogram

/// The latencies of one kind of operation in one run, summarized the way
/// etcd's `benchmark` tool prints them, so that its users can read Cairn's
/// figures side by side with etcd's without learning a new layout.
///
/// Fastest, slowest, average and standard deviation are exact (computed from
/// every sample); percentiles and the histogram come from an HdrHistogram of
/// the samples in nanoseconds with three significant digits, so a percentile
/// is within 0.1 % of the exact one.
///
/// Properties:
/// 1. `count` is the number of successful operations; errors are counted in
///    `errors` only and never contribute a latency.
/// 2. When `count` is 0, every latency figure is 0 and the histogram and
///    percentile lists are empty.
/// 3. `histogram` has `histogramBucketCount + 1` rows (etcd's layout): the
///    upper bounds run from `fastest` to `slowest` in equal steps and the
///    counts sum to `count`.
struct LatencySummary: Codable, Sendable, Equatable {
    /// One line of the latency distribution.
    struct Percentile: Codable, Sendable, Equatable {
        var percentile: Double
        var seconds: Double
    }

    /// One line of the response time histogram: operations at most
    /// `upperSeconds` and above the previous line's bound.
    struct Bucket: Codable, Sendable, Equatable {
        var upperSeconds: Double
        var count: Int
    }

    /// The percentiles etcd's tool prints.
    static let percentilesReported: [Double] = [10, 25, 50, 75, 90, 95, 99, 99.9]
    /// Buckets of the response time histogram (etcd prints ten plus the slowest).
    static let histogramBucketCount = 10
    /// Widest bar of the histogram, in characters.
    static let histogramBarWidthMax = 40
    /// The longest latency the histogram tracks; longer samples are clamped.
    static let latencyNanosecondsMax: UInt64 = 600_000_000_000

    var operation: String
    var count: Int
    var errors: [String: Int]
    var totalSeconds: Double
    var slowestSeconds: Double
    var fastestSeconds: Double
    var averageSeconds: Double
    var stddevSeconds: Double
    var requestsPerSecond: Double
    var percentiles: [Percentile]
    var histogram: [Bucket]

    /// Summarizes `samples` (latencies in nanoseconds) of an operation run
    /// that took `totalSeconds` of wall time.
    init(operation: String, samples: [UInt64], errors: [String: Int], totalSeconds: Double) {
        self.operation = operation
        self.count = samples.count
        self.errors = errors
        self.totalSeconds = totalSeconds
        self.requestsPerSecond = totalSeconds > 0 ? Double(samples.count) / totalSeconds : 0
        guard let fastest = samples.min(), let slowest = samples.max() else {
            self.slowestSeconds = 0
            self.fastestSeconds = 0
            self.averageSeconds = 0
            self.stddevSeconds = 0
            self.percentiles = []
            self.histogram = []
            return
        }
        let seconds = samples.map { Double($0) / 1e9 }
        let average = seconds.reduce(0, +) / Double(seconds.count)
        let variance = seconds.reduce(0) { $0 + ($1 - average) * ($1 - average) } / Double(seconds.count)
        self.fastestSeconds = Double(fastest) / 1e9
        self.slowestSeconds = Double(slowest) / 1e9
        self.averageSeconds = average
        self.stddevSeconds = variance.squareRoot()

        var histogram = Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: Self.latencyNanosecondsMax,
            numberOfSignificantValueDigits: .three)
        for sample in samples {
            _ = histogram.record(Swift.min(Swift.max(sample, 1), Self.latencyNanosecondsMax))
        }
        self.percentiles = Self.percentilesReported.map { percentile in
            Percentile(percentile: percentile, seconds: Double(histogram.valueAtPercentile(percentile)) / 1e9)
        }
        self.histogram = Self.buckets(of: histogram, fastest: fastest, slowest: slowest)
    }

    /// etcd's histogram: `histogramBucketCount` equal steps from the fastest
    /// to the slowest sample; each recorded value counts in the first bucket
    /// whose bound it does not exceed.
    static func buckets(of histogram: Histogram<UInt64>, fastest: UInt64, slowest: UInt64) -> [Bucket] {
        let step = Double(slowest - fastest) / Double(Self.histogramBucketCount)
        var bounds = (0..<Self.histogramBucketCount).map { Double(fastest) + step * Double($0) }
        bounds.append(Double(slowest))
        var counts = [Int](repeating: 0, count: bounds.count)
        for value in histogram.recordedValues() {
            // The histogram reports the top of each equivalent range; its
            // middle is the better estimate of the samples it holds, except
            // that the ranges holding the exact extremes stand for them.
            let range = histogram.equivalentRangeForValue(value.value)
            let estimate =
                range.contains(fastest)
                ? fastest
                : range.contains(slowest)
                    ? slowest
                    : Swift.min(Swift.max(histogram.medianEquivalentForValue(value.value), fastest), slowest)
            let index = bounds.firstIndex { Double(estimate) <= $0 } ?? bounds.count - 1
            counts[index] += Int(value.count)
        }
        return zip(bounds, counts).map { Bucket(upperSeconds: $0 / 1e9, count: $1) }
    }

    /// The summary as etcd's tool prints it (`%4.4f` seconds).
    var text: String {
        var text = ""
        if self.count > 0 {
            text += "\nSummary:\n"
            text += "  Total:\t\(Self.seconds(self.totalSeconds)).\n"
            text += "  Slowest:\t\(Self.seconds(self.slowestSeconds)).\n"
            text += "  Fastest:\t\(Self.seconds(self.fastestSeconds)).\n"
            text += "  Average:\t\(Self.seconds(self.averageSeconds)).\n"
            text += "  Stddev:\t\(Self.seconds(self.stddevSeconds)).\n"
            text += "  Requests/sec:\t\(String(format: "%4.4f", self.requestsPerSecond))\n"
            text += "\nResponse time histogram:\n"
            let widest = self.histogram.map(\.count).max() ?? 0
            for bucket in self.histogram {
                let bar = widest > 0 ? bucket.count * Self.histogramBarWidthMax / widest : 0
                text += "  \(String(format: "%4.4f", bucket.upperSeconds)) [\(bucket.count)]\t|"
                text += String(repeating: "∎", count: bar) + "\n"
            }
            text += "\nLatency distribution:\n"
            for line in self.percentiles where line.seconds > 0 {
                text += "  \(Self.percentileLabel(line.percentile))% in "
                text += "\(String(format: "%.3f", line.seconds * 1000)) ms.\n"
            }
        }
        if !self.errors.isEmpty {
            text += "\nError distribution:\n"
            for (message, count) in self.errors.sorted(by: { $0.value > $1.value }) {
                text += "  [\(count)]\t\(message)\n"
            }
        }
        return text
    }

    static func seconds(_ value: Double) -> String {
        String(format: "%4.4f", value) + " secs"
    }

    /// `10`, `99.9`: as Go's `%v` prints a float64 percentile.
    static func percentileLabel(_ percentile: Double) -> String {
        percentile == percentile.rounded() ? String(Int(percentile)) : String(percentile)
    }

    /// The latency at `percentile`, in milliseconds (0 when not reported).
    func milliseconds(atPercentile percentile: Double) -> Double {
        (self.percentiles.first { $0.percentile == percentile }?.seconds ?? 0) * 1000
    }
}
