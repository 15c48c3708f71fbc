// swift-tools-version: 6.1
// Cairn: an etcd-v3-compatible, strongly consistent key-value store.
// The layout and its dependency direction are described in DESIGN.md (shared/):
// pure core modules (CairnCore, CairnRaft, CairnMVCC, CairnStateMachine,
// CairnReplica) depend on the standard library and swift-collections only.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let nio: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP2", package: "swift-nio-http2"),
    .product(name: "NIOHPACK", package: "swift-nio-http2"),
    .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
]

let package = Package(
    name: "Cairn",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cairn-bench", targets: ["cairn-bench"]),
        .executable(name: "cairn", targets: ["cairn"]),
        .executable(name: "cairnctl", targets: ["cairnctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // MARK: pure core
        .target(name: "CairnCore", swiftSettings: strict),
        .target(
            name: "CairnMVCC",
            dependencies: ["CairnCore", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        .target(name: "CairnStateMachine", dependencies: ["CairnCore", "CairnMVCC"], swiftSettings: strict),

        .target(
            name: "CairnRaft",
            dependencies: [.product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // Member core: Raft + state machine + storage effects; pure like the core.
        .target(
            name: "CairnReplica", dependencies: ["CairnRaft", "CairnStateMachine", "CairnMVCC", "CairnCore"],
            swiftSettings: strict
        ),
        // Deterministic cluster simulator (tests and `cairn-sim`); pure like the core.
        .target(
            name: "CairnSim",
            dependencies: ["CairnRaft", "CairnReplica", "CairnStateMachine", "CairnMVCC", "CairnCore"],
            swiftSettings: strict
        ),

        // MARK: storage (WAL, snapshot files, file-system seam; Glibc, no Foundation)
        .target(name: "CairnStorage", dependencies: ["CairnCore"], swiftSettings: strict),

        // MARK: wire schema and RPC
        .target(
            name: "CairnAPI",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Protos"],
            swiftSettings: strict
        ),
        .target(
            name: "CairnRPC",
            dependencies: ["CairnAPI", "CairnTLS", .product(name: "SwiftProtobuf", package: "swift-protobuf")] + nio,
            swiftSettings: strict
        ),
        // Async/await client of the etcd v3 API (gateway, cairn-bench, integration tests).
        .target(
            name: "CairnClient",
            dependencies: [
                "CairnRPC", "CairnTLS", "CairnAPI", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ] + nio,
            swiftSettings: strict
        ),

        // The member shell: durable write path, services, executor (NIO, Foundation).
        .target(
            name: "CairnServer",
            dependencies: [
                "CairnCore", "CairnMVCC", "CairnStateMachine", "CairnStorage", "CairnAPI", "CairnRPC",
                "CairnRaft", "CairnReplica", "CairnPeer", "COpenSSL", "CairnMetrics",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ] + nio,
            swiftSettings: strict
        ),

        // MARK: peer transport (framed member-to-member streams and snapshots; opaque payloads)
        .target(
            name: "CairnPeer",
            dependencies: [
                "CairnCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // MARK: metrics and health (Prometheus registry, the --listen-metrics-urls HTTP listener)
        .target(
            name: "CairnMetrics",
            dependencies: [
                "CairnAPI",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // MARK: TLS (the system OpenSSL through our own NIO handler; no BoringSSL)
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .target(
            name: "CairnTLS",
            dependencies: [
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // MARK: the gateway (a client of the cluster: imports no member module, works in front of etcd)
        .target(
            name: "CairnGateway",
            dependencies: [
                "CairnAPI", "CairnRPC", "CairnClient", "CairnTLS", "CairnMetrics",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ] + nio,
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnGatewayTests",
            dependencies: ["CairnGateway", "CairnAPI", "CairnRPC", "CairnClient", "CairnTestSupport"] + nio,
            swiftSettings: strict
        ),

        // MARK: executables
        .executableTarget(
            name: "cairn",
            dependencies: [
                "CairnServer", "CairnRPC", "CairnPeer", "CairnTLS", "CairnGateway", "CairnMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ] + nio,
            swiftSettings: strict
        ),
        // Operator tools: snapshot status/restore (as etcdutl), gateway tenants and status.
        .executableTarget(
            name: "cairnctl",
            dependencies: [
                "CairnServer", "CairnGateway", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cairn-sim",
            dependencies: [
                "CairnSim", "CairnRaft", "CairnReplica",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cairn-bench",
            dependencies: [
                "CairnAPI", "CairnRPC", "CairnMVCC", "CairnCore", "CairnClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ] + nio,
            swiftSettings: strict
        ),

        // MARK: tests
        .testTarget(
            name: "CairnRaftTests",
            dependencies: ["CairnRaft"],
            exclude: ["Scenarios"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnSimTests",
            dependencies: ["CairnSim", "CairnRaft", "CairnReplica", "CairnStateMachine", "CairnMVCC", "CairnCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnReplicaTests",
            dependencies: ["CairnReplica", "CairnRaft", "CairnStateMachine", "CairnMVCC", "CairnCore"],
            swiftSettings: strict
        ),
        .testTarget(name: "CairnCoreTests", dependencies: ["CairnCore"], swiftSettings: strict),
        .testTarget(name: "CairnMVCCTests", dependencies: ["CairnMVCC", "CairnCore"], swiftSettings: strict),
        .testTarget(
            name: "CairnStateMachineTests",
            dependencies: ["CairnStateMachine", "CairnMVCC", "CairnCore"],
            swiftSettings: strict
        ),
        .testTarget(name: "CairnStorageTests", dependencies: ["CairnCore", "CairnStorage"], swiftSettings: strict),
        .testTarget(
            name: "CairnAPITests",
            dependencies: ["CairnAPI"],
            swiftSettings: strict
        ),
        .target(
            name: "CairnTestSupport",
            dependencies: [.product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            path: "Tests/CairnTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnRPCTests",
            dependencies: ["CairnRPC", "CairnTLS", "CairnAPI", "CairnTestSupport"] + nio,
            exclude: ["Interop"],
            swiftSettings: strict
        ),
        // Runs the real `cairn member` and `etcdctl` (needs `cairn` built beside the tests).
        .testTarget(
            name: "CairnServerTests",
            dependencies: [
                "CairnTestSupport", "CairnClient", "CairnAPI", "CairnRPC", "CairnSim",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnTLSTests",
            dependencies: [
                "CairnTLS", "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnMetricsTests",
            dependencies: [
                "CairnMetrics", "CairnTestSupport", .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnPeerTests",
            dependencies: [
                "CairnPeer", "CairnTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Parses every manifest and unit under deploy/ and checks what must agree.
        .testTarget(
            name: "DeployTests",
            dependencies: ["CairnTestSupport", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnClientTests",
            dependencies: ["CairnClient", "CairnAPI", "CairnRPC", "CairnTestSupport"],
            swiftSettings: strict
        ),
        // cairn-bench's report arithmetic and layout (no server needed).
        .testTarget(name: "CairnBenchTests", dependencies: ["cairn-bench"], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
