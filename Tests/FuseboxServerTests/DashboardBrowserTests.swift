import Foundation
import FuseboxTesting
import XCTest

/// The dashboard in a real browser: headless Debian Chromium driven by
/// Selenium (Tests/Interop/dashboard_browser.py), against a real fuseboxd
/// process whose tokens were made by `fuseboxd dashboard-token`, with a
/// grpcio client of the same fuseboxd tripping and forcing breakers.
final class DashboardBrowserTests: XCTestCase {
    private var directory = ""
    private var server: FuseboxdProcess!

    override func tearDown() {
        server?.stop(SIGTERM)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A token and its configuration hash, from `fuseboxd dashboard-token`.
    private func makeToken(name: String, role: String) throws -> (token: String, sha256: String) {
        let result = try runProcess([builtProduct("fuseboxd").path, "dashboard-token", "--name", name, "--role", role], timeout: 30)
        XCTAssertEqual(result.status, 0, result.output)
        let lines = result.output.split(whereSeparator: \.isNewline).map(String.init)
        let token = try XCTUnwrap(lines.first { $0.hasPrefix("token ") }?.split(separator: " ").last.map(String.init), result.output)
        let digest = try XCTUnwrap(lines.first { $0.contains("sha256: ") }?.split(separator: " ").last.map(String.init), result.output)
        XCTAssertFalse(result.output.contains("token: \(token)"), "the config entry must not hold the token")
        return (token, digest)
    }

    func testTheDashboardInAHeadlessBrowser() throws {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            XCTAssertTrue(FileManager.default.isExecutableFile(atPath: tool), "\(tool) is missing: scripts/install-deps installs it")
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-dashboard-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let admin = try makeToken(name: "alice", role: "admin")
        let reader = try makeToken(name: "wallboard", role: "reader")
        let config = """
            dashboard:
              host: 127.0.0.1
              port: 0
              tokens:
                - name: alice
                  role: admin
                  sha256: \(admin.sha256)
                - name: wallboard
                  role: reader
                  sha256: \(reader.sha256)
            """
        try config.write(toFile: directory + "/fusebox.yaml", atomically: true, encoding: .utf8)
        server = try FuseboxdProcess(dataDirectory: directory + "/data", extra: ["--config", directory + "/fusebox.yaml"])
        let line = try XCTUnwrap(server.launched.waitForLine(timeout: 10) { $0.contains("dashboard on https://127.0.0.1:") }, server.launched.text)
        let port = try XCTUnwrap(line.components(separatedBy: "https://127.0.0.1:").last.flatMap { Int($0.prefix { $0.isNumber }) })
        // FUSEBOX_DASHBOARD_SCREENSHOT=docs/img/dashboard.png makes the README's
        // picture, after a minute of traffic so that the sparklines have history.
        let readme = ProcessInfo.processInfo.environment["FUSEBOX_DASHBOARD_SCREENSHOT"]
        let screenshot = readme ?? directory + "/dashboard.png"
        let result = try runProcess([
            "python3", "Tests/Interop/dashboard_browser.py", "--dashboard", "https://127.0.0.1:\(port)", "--grpc", "127.0.0.1:\(server.port)",
            "--ca", try TestCertificates.path("ca.pem"), "--cert", try TestCertificates.path("admin.pem"), "--key", try TestCertificates.path("admin.key"),
            "--admin-token", admin.token, "--reader-token", reader.token, "--admin-name", "alice", "--reader-name", "wallboard",
            "--screenshot", screenshot, "--history-seconds", readme == nil ? "0" : "60", "--work", directory + "/work",
        ], timeout: 420)
        print(result.output.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("dashboard-test:") }.joined(separator: "\n"))
        XCTAssertFalse(result.timedOut, "the browser test did not finish within 420 s:\n\(result.output.suffix(4_000))")
        XCTAssertEqual(result.status, 0, "the browser test failed:\n\(result.output.suffix(6_000))\nfuseboxd:\n\(server.launched.stderrTail())")
        for step in ["login", "live-update", "admin-action", "reader-csrf", "scale", "size", "screenshot"] {
            XCTAssertTrue(result.output.contains("dashboard-test: \(step): ok"), "step \(step) did not pass:\n\(result.output.suffix(3_000))")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot))
    }
}
