import Foundation
import Testing

@testable import cairn_bench

/// The figures `cairn-bench` prints are the ones compared with etcd's tool:
/// pin their arithmetic and layout.
@Suite struct LatencySummaryTests {
    /// 1 ms … 100 ms, one sample each.
    let samples = (1...100).map { UInt64($0) * 1_000_000 }

    @Test func exactFiguresComeFromEverySample() {
        let summary = LatencySummary(operation: "put", samples: self.samples, errors: [:], totalSeconds: 2)
        #expect(summary.count == 100)
        #expect(summary.fastestSeconds == 0.001)
        #expect(summary.slowestSeconds == 0.1)
        #expect(abs(summary.averageSeconds - 0.0505) < 1e-12)
        // Population standard deviation of 1…100 ms: sqrt((100² − 1) / 12) ms.
        #expect(abs(summary.stddevSeconds - (9_999.0 / 12).squareRoot() / 1000) < 1e-9)
        #expect(summary.requestsPerSecond == 50)
    }

    @Test func percentilesAreWithinHdrHistogramPrecision() {
        let summary = LatencySummary(operation: "put", samples: self.samples, errors: [:], totalSeconds: 1)
        #expect(summary.percentiles.map(\.percentile) == [10, 25, 50, 75, 90, 95, 99, 99.9])
        for (percentile, exact) in [(10.0, 0.010), (50.0, 0.050), (90.0, 0.090), (99.0, 0.099)] {
            let measured = summary.milliseconds(atPercentile: percentile) / 1000
            #expect(abs(measured - exact) <= exact * 0.001, "p\(percentile): \(measured) vs \(exact)")
        }
    }

    @Test func histogramHasElevenBucketsFromFastestToSlowestHoldingEverySample() {
        let summary = LatencySummary(operation: "put", samples: self.samples, errors: [:], totalSeconds: 1)
        #expect(summary.histogram.count == 11)
        #expect(summary.histogram.first?.upperSeconds == 0.001)
        #expect(summary.histogram.last?.upperSeconds == 0.1)
        #expect(summary.histogram.map(\.count).reduce(0, +) == 100)
        // 1 ms alone is at most the first bound; 2…10.9 ms fall in the second.
        #expect(summary.histogram[0].count == 1)
        #expect(summary.histogram[1].count == 9)
    }

    @Test func textFollowsEtcdsLayout() {
        let summary = LatencySummary(
            operation: "put", samples: self.samples, errors: ["etcdserver: too many requests": 2],
            totalSeconds: 2)
        let text = summary.text
        #expect(text.hasPrefix("\nSummary:\n  Total:\t2.0000 secs.\n  Slowest:\t0.1000 secs.\n"))
        #expect(text.contains("  Requests/sec:\t50.0000\n"))
        #expect(text.contains("\nResponse time histogram:\n  0.0010 [1]\t|"))
        #expect(text.contains("\nLatency distribution:\n  10% in 10.0"))
        #expect(text.contains("  99.9% in 100."))
        #expect(text.contains("\nError distribution:\n  [2]\tetcdserver: too many requests\n"))
    }

    @Test func noSuccessLeavesOnlyTheErrors() {
        let summary = LatencySummary(operation: "put", samples: [], errors: ["boom": 3], totalSeconds: 1)
        #expect(summary.count == 0)
        #expect(summary.histogram.isEmpty)
        #expect(summary.percentiles.isEmpty)
        #expect(summary.text == "\nError distribution:\n  [3]\tboom\n")
    }

    @Test func procStatFieldsAreCountedFromTheLastParenthesis() {
        // Field 2 holds a space and a parenthesis; utime = 250, stime = 50.
        let stat = "1234 (cairn (m1) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 5 1 2"
        #expect(ProcessSample.cpuTicks(stat: stat) == 300)
        #expect(
            ProcessSample.residentKiB(status: "Name:\tcairn\nVmRSS:\t   12345 kB\nThreads:\t9\n") == 12_345)
        #expect(ProcessSample.cpuTicks(stat: "garbage") == nil)
    }

    @Test func readsThisProcessFromProc() throws {
        var spin = 0
        for index in 0..<20_000_000 { spin &+= index }
        #expect(spin != 0)
        let sample = try ProcessSample.read(pid: ProcessInfo.processInfo.processIdentifier)
        #expect(sample.residentKiB > 0)
        #expect(sample.cpuSeconds > 0)
        #expect(throws: BenchError.self) { try ProcessSample.read(pid: Int32.max) }
    }
}
