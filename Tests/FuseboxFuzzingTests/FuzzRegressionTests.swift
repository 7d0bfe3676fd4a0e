import Foundation
import FuseboxFuzzing
import XCTest

/// Replays every committed fuzz input through the code the fuzz targets run
/// (`FuzzTarget.run`): the seed corpora (`Fuzz/Corpus/<target>/`) and every
/// input that once crashed or broke an invariant (`Fuzz/Regressions/<target>/`).
/// A crash here is a regression of a fixed bug; a `FuzzFinding` fails the test.
final class FuzzRegressionTests: XCTestCase {
    private static let fuzzDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    private func inputs(_ kind: String, _ target: FuzzTarget) throws -> [URL] {
        let directory = Self.fuzzDirectory.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
        // git keeps no empty directory: a target without regressions has none.
        guard FileManager.default.fileExists(atPath: directory.path) else { return [] }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory.appendingPathComponent($0) }
    }

    private func replay(_ kind: String, _ target: FuzzTarget) throws -> Int {
        let files = try inputs(kind, target)
        for file in files {
            do {
                try target.run(Array(try Data(contentsOf: file)))
            } catch {
                XCTFail("\(kind)/\(target.rawValue)/\(file.lastPathComponent): \(error)")
            }
        }
        return files.count
    }

    /// Every target has a seed corpus, and every seed runs without a finding.
    func testCorporaReplay() throws {
        for target in FuzzTarget.allCases {
            XCTAssertGreaterThan(try replay("Corpus", target), 0, "Fuzz/Corpus/\(target.rawValue) holds no seed")
        }
    }

    /// Every input a campaign found a crash or a finding with runs cleanly now.
    func testRegressionsReplay() throws {
        for target in FuzzTarget.allCases {
            _ = try replay("Regressions", target)
        }
    }
}
