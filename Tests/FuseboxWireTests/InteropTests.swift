import Foundation
import XCTest
import FuseboxTesting

@testable import FuseboxWire

/// FuseboxWire against an independent Protobuf implementation: Python's
/// `protobuf` package, with code generated from the same Protos/.
final class InteropTests: XCTestCase {
    func testBytesCrossBetweenSwiftAndPythonProtobufBothWays() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-interop-\(UUID().uuidString)")
        let swiftDir = work.appendingPathComponent("swift")
        try FileManager.default.createDirectory(at: swiftDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        var samples = 0
        for type in allSampledTypes {
            samples += try writeSamples(type, to: swiftDir)
        }
        let result = try runProcess([
            "python3", "Tests/Interop/wire_interop.py",
            "--protos", repositoryRoot.appendingPathComponent("Protos").path, "--dir", work.path,
        ])
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("\(samples) message samples checked, 0 problems"), result.output)

        var decoded = 0
        for type in allSampledTypes {
            decoded += try checkPythonBytes(type, in: work.appendingPathComponent("python"))
        }
        XCTAssertEqual(decoded, samples)
    }

    private func writeSamples<T: WireSampled>(_ type: T.Type, to dir: URL) throws -> Int {
        for variant in 0..<T.sampleVariants {
            let bytes = try T.sample(variant).encode()
            try Data(bytes).write(to: dir.appendingPathComponent("\(T.protoName).\(variant).bin"))
        }
        return T.sampleVariants
    }

    private func checkPythonBytes<T: WireSampled>(_ type: T.Type, in dir: URL) throws -> Int {
        for variant in 0..<T.sampleVariants {
            let url = dir.appendingPathComponent("\(T.protoName).\(variant).bin")
            let bytes = [UInt8](try Data(contentsOf: url))
            XCTAssertEqual(try T(decoding: bytes), T.sample(variant), "Python's \(T.protoName) variant \(variant)")
        }
        return T.sampleVariants
    }
}
