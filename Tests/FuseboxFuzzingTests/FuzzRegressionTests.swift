import Foundation
import FuseboxFuzzing
import FuseboxWire
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

    /// The wire-decode seeds still select the type they are named after: byte
    /// 0 indexes `allWireMessageTypes`, so a message type added to the Protos
    /// shifts every seed after it (37 of 100 did, unnoticed, when the health
    /// and alert messages came). `python3 Fuzz/make_seeds.py` rewrites them.
    func testEveryMessageTypeHasAWireDecodeSeedThatSelectsIt() throws {
        let files = try inputs("Corpus", .wireDecode)
        var covered = Set<String>()
        for file in files {
            let name = file.lastPathComponent
            guard let dash = name.firstIndex(of: "-"), let index = Int(name[..<dash]) else { continue }
            let bytes = Array(try Data(contentsOf: file))
            let typeName = String(name[name.index(after: dash)...])
            XCTAssertEqual(bytes.first.map(Int.init), index, "\(name) does not start with its index")
            guard let first = bytes.first else { continue }
            let selected = String(describing: allWireMessageTypes[Int(first) % allWireMessageTypes.count])
            XCTAssertEqual(selected, typeName, "seed \(name) selects \(selected): run python3 Fuzz/make_seeds.py")
            covered.insert(typeName)
        }
        let missing = allWireMessageTypes.map { String(describing: $0) }.filter { !covered.contains($0) }
        XCTAssertEqual(missing, [], "message types without a wire-decode seed: run python3 Fuzz/make_seeds.py")
    }

    /// Every input a campaign found a crash or a finding with runs cleanly now.
    func testRegressionsReplay() throws {
        for target in FuzzTarget.allCases {
            _ = try replay("Regressions", target)
        }
    }
}
