// swift-tools-version:6.1
import PackageDescription

// Benchmarks live in their own package so the test command never builds them.
// Run with scripts/bench-core (release build, allocation counting through
// malloc-interposer preloaded into the process).
let package = Package(
    name: "fusebox-benchmarks",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/malloc-interposer.git", from: "1.6.1"),
    ],
    targets: [
        .executableTarget(
            name: "fusebox-core-bench",
            dependencies: [
                .product(name: "FuseboxCore", package: "main"),
                .product(name: "FuseboxClient", package: "main"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
