import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

extension Member {
    /// Applied entries between two heap trims.
    static let heapTrimEntriesInterval: UInt64 = 10_000
    /// How often the member looks whether a trim is due.
    static let heapTrimCheckInterval = TimeAmount.seconds(5)

    /// Hands memory the allocator holds but no longer uses back to the
    /// system, every `heapTrimEntriesInterval` applied entries (checked every
    /// `heapTrimCheckInterval`) and after each snapshot.
    ///
    /// Why: glibc keeps freed memory in its per-thread arenas. A write load
    /// frees request buffers on the connection threads and snapshot buffers
    /// on the I/O threads, and a 3-member run of 300,000 puts left 70 of
    /// 385 MiB of resident memory free but held. `malloc_trim` releases it
    /// (it runs on the I/O pool, off the executor). Other C libraries have
    /// no such call, so nothing is done there.
    func startHeapTrims() {
        self.eventLoop.execute {
            self.heapTrimmedAt = self.replica.appliedIndex
            let task = self.eventLoop.scheduleRepeatedTask(
                initialDelay: Self.heapTrimCheckInterval, delay: Self.heapTrimCheckInterval
            ) { _ in
                let applied = self.replica.appliedIndex
                guard applied >= self.heapTrimmedAt + Self.heapTrimEntriesInterval else { return }
                self.trimHeap()
            }
            self.appendTimers([task])
        }
    }

    /// One trim, on the I/O pool. Executor only.
    func trimHeap() {
        self.heapTrimmedAt = self.replica.appliedIndex
        guard let trim = HeapTrim.function else { return }
        self.ioPool.submit { _ in _ = trim(0) }
    }
}

/// glibc's `malloc_trim`, looked up at run time: Swift's Glibc module does
/// not export `<malloc.h>`, and another C library may not have it.
enum HeapTrim {
    typealias Function = @convention(c) (Int) -> Int32

    static let function: Function? = {
        #if canImport(Glibc)
            guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "malloc_trim") else {
                return nil
            }
            return unsafeBitCast(symbol, to: Function.self)
        #else
            return nil
        #endif
    }()
}
