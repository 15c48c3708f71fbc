import Dispatch
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// Suspends until SIGINT or SIGTERM arrives, so the member drains its calls
/// and closes its WAL instead of dying mid-write.
func waitForTermination() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumed = NIOLockedValueBox(false)
        let queue = DispatchQueue(label: "cairn.member.signals")
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler {
                // Capturing the source keeps it alive for the process's life.
                _ = source
                let isFirst = resumed.withLockedValue { seen in
                    defer { seen = true }
                    return !seen
                }
                if isFirst { continuation.resume() }
            }
            source.resume()
        }
    }
}
