import Dispatch
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// Waits for SIGINT or SIGTERM, so servers shut down gracefully (GOAWAY, drain)
/// instead of dropping calls in flight.
func waitForTermination() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumed = NIOLockedValueBox(false)
        let queue = DispatchQueue(label: "cairn.signals")
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler {
                // The handler keeps `source` alive for the life of the process.
                _ = source
                let first = resumed.withLockedValue { done in
                    defer { done = true }
                    return !done
                }
                if first { continuation.resume() }
            }
            source.resume()
        }
    }
}
