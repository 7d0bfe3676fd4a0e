// swift-tools-version:6.1
import PackageDescription

// Benchmarks live in their own package so the test command never builds them.
// Run with scripts/bench-core (release build, allocation counting through
// malloc-interposer preloaded into the process).
let package = Package(
    name: "fusebox-benchmarks",
    dependencies: [
        .package(name: "fusebox", path: ".."),
        .package(url: "https://github.com/ordo-one/malloc-interposer.git", from: "1.6.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Microbenchmarks on ordo-one/benchmark (scripts/bench-micro).
        .executableTarget(
            name: "FuseboxMicro",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "FuseboxCore", package: "fusebox"),
                .product(name: "FuseboxClient", package: "fusebox"),
                .product(name: "FuseboxAuthority", package: "fusebox"),
                .product(name: "FuseboxAPI", package: "fusebox"),
                .product(name: "FuseboxWire", package: "fusebox"),
            ],
            path: "Benchmarks/FuseboxMicro",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "fusebox-core-bench",
            dependencies: [
                .product(name: "FuseboxCore", package: "fusebox"),
                .product(name: "FuseboxClient", package: "fusebox"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "fusebox-bench",
            dependencies: [
                .product(name: "FuseboxCore", package: "fusebox"),
                .product(name: "FuseboxClient", package: "fusebox"),
                .product(name: "FuseboxRPC", package: "fusebox"),
                .product(name: "FuseboxTLS", package: "fusebox"),
                .product(name: "FuseboxWire", package: "fusebox"),
                .product(name: "FuseboxAPI", package: "fusebox"),
                .product(name: "FuseboxEtcd", package: "fusebox"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
