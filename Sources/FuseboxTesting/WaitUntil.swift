import XCTest

/// Polls `condition` every 5 ms until it holds; fails the test (without
/// throwing) if it does not within `timeout` seconds. Bounded, so a broken
/// condition cannot hang the suite.
public func waitUntil(
    _ what: String, timeout: Double = 10, file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool
) async {
    let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
    while !condition() {
        if ContinuousClock.now > deadline {
            XCTFail("timed out after \(timeout) s waiting for \(what)", file: file, line: line)
            return
        }
        try? await Task.sleep(for: .milliseconds(5))
    }
}
