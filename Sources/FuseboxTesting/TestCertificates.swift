public import Foundation

/// Certificates for tests, made once per test process in a temporary
/// directory: scripts/gen-certs' development PKI (ca, server, reader,
/// reporter, admin, replica) plus Tests/Support/make_test_certs.py's broken ones
/// (expired-*, future-*, other-ca, other-*, rotated-server, elsewhere-server).
public enum TestCertificates {
    private static let made: Result<URL, TestCertificateError> = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-test-certs-\(UUID().uuidString)")
        do {
            let gen = try runProcess(["bash", "scripts/gen-certs", "--out", dir.path, "--days", "30"], timeout: 60)
            guard gen.status == 0 else { return .failure(TestCertificateError(output: gen.output)) }
            let extra = try runProcess(["python3", "Tests/Support/make_test_certs.py", dir.path], timeout: 60)
            guard extra.status == 0 else { return .failure(TestCertificateError(output: extra.output)) }
            return .success(dir)
        } catch {
            return .failure(TestCertificateError(output: "\(error)"))
        }
    }()

    /// The directory holding them.
    public static func directory() throws -> URL {
        try made.get()
    }

    /// The path of `name` (e.g. "server.pem") in that directory.
    public static func path(_ name: String) throws -> String {
        try directory().appendingPathComponent(name).path
    }
}

/// Making the test certificates failed.
public struct TestCertificateError: Error, CustomStringConvertible {
    /// What the generator printed.
    public var output: String
    /// The generator's output.
    public var description: String { "could not make test certificates:\n\(output)" }
}
