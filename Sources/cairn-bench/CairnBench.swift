import ArgumentParser

/// `cairn-bench`: load generator and conformance servers for any etcd-API endpoint.
@main
struct CairnBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-bench",
        abstract: "Benchmarks and conformance servers for the etcd v3 API.",
        discussion: """
            The load workloads follow etcd's `benchmark` tool (same flags, same output), and run against \
            any etcd-API endpoint: `cairn-bench put --endpoints 127.0.0.1:2379 --conns 64 --clients 1024 \
            --total 100000 --val-size 256`. Flags go after the workload's name.
            """,
        subcommands: [
            PutCommand.self, RangeCommand.self, TxnPutCommand.self, TxnMixedCommand.self,
            WatchLatencyCommand.self, WatchFanoutCommand.self, LeaseKeepAliveCommand.self,
            RPCServerCommand.self, MVCCCommand.self,
        ]
    )
}
