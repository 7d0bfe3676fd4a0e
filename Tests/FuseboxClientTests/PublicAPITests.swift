import Foundation
import FuseboxClient
import FuseboxTesting
import XCTest

/// The SDK's public API exposes no NIO, TLS or RPC types (issue: a fleet
/// session as a Service). With `InternalImportsByDefault` on, a plain
/// `import` is internal, and the compiler rejects any public declaration
/// that names a type of a module imported that way; so the API stays free of
/// those types as long as no such module is imported publicly. These tests
/// hold both halves.
final class PublicAPITests: XCTestCase {
    /// The modules an app that links FuseboxClient may see in its API.
    static let allowed: Set<String> = ["Foundation", "FuseboxCore", "Logging", "Tracing", "ServiceLifecycle"]

    private static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// `(file, module)` for every import of `directory`'s Swift files that
    /// is public, package-wide or re-exported.
    private static func visibleImports(under directory: String) throws -> [(String, String)] {
        let folder = root.appendingPathComponent(directory)
        let files = (FileManager.default.enumerator(atPath: folder.path)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".swift") }
        XCTAssertFalse(files.isEmpty, "no Swift files under \(folder.path)")
        let pattern = try NSRegularExpression(pattern: #"^\s*(@_exported\s+import|(public|package|open)\s+import)\s+(\w+)"#, options: .anchorsMatchLines)
        var found: [(String, String)] = []
        for file in files {
            let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range(at: 3), in: text) { found.append((file, String(text[range]))) }
            }
        }
        return found
    }

    func testTheSDKImportsNoTransportModulePublicly() throws {
        let imports = try Self.visibleImports(under: "Sources/FuseboxClient")
        // The SDK does expose its own modules: a test that sees none read nothing.
        XCTAssertTrue(imports.contains { $0.1 == "FuseboxCore" }, "FuseboxClient's public import of FuseboxCore was not found")
        let leaking = imports.filter { !Self.allowed.contains($0.1) }
        XCTAssertEqual(
            leaking.map { "\($0.0): \($0.1)" }, [],
            "FuseboxClient imports these publicly, so its API may expose their types (NIO, TLS, RPC types must stay internal)")
    }

    func testTheDomainTypesTheSDKExposesImportNoTransportModulePublicly() throws {
        let leaking = try Self.visibleImports(under: "Sources/FuseboxCore").filter { !["Foundation"].contains($0.1) }
        XCTAssertEqual(leaking.map { "\($0.0): \($0.1)" }, [], "FuseboxCore's public imports reach every SDK user")
    }

    func testImportsAreInternalByDefault() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        XCTAssertTrue(
            manifest.contains(#".enableUpcomingFeature("InternalImportsByDefault")"#),
            "without InternalImportsByDefault a plain import is public and the compiler no longer keeps NIO types out of the SDK's API")
    }

    /// An app configures and starts the SDK with the SDK's own types alone
    /// (this file imports no NIO, TLS or RPC module), and a configuration it
    /// cannot use is named by its field.
    func testAConfigurationTheSDKCannotUseIsNamedByItsField() async throws {
        let ca = try TestCertificates.path("ca.pem")
        let cache = FileManager.default.temporaryDirectory.path + "/public-api-\(UUID())"
        defer { try? FileManager.default.removeItem(atPath: cache) }

        XCTAssertThrowsError(try FuseboxEndpoint.list(parsing: "127.0.0.1:1,127.0.0.1:1"))
        let twice = [FuseboxEndpoint(host: "127.0.0.1", port: 1), FuseboxEndpoint(host: "127.0.0.1", port: 1)]
        do {
            _ = try await Fusebox.start(FuseboxConfiguration(endpoints: twice, tls: .client(trustRootsPath: ca), cacheDirectory: cache))
            XCTFail("one endpoint listed twice was accepted")
        } catch {
            XCTAssertEqual(error.field, "endpoints")
            XCTAssertTrue(error.message.contains("127.0.0.1:1"), error.message)
        }
        do {
            _ = try await Fusebox.connect(FuseboxConfiguration(endpoints: [], tls: .client(trustRootsPath: ca), cacheDirectory: cache))
            XCTFail("no endpoints was accepted")
        } catch {
            XCTAssertEqual(error.field, "endpoints")
        }
        do {
            _ = try await Fusebox.start(
                FuseboxConfiguration(host: "127.0.0.1", port: 1, tls: .client(trustRootsPath: "/nonexistent/ca.pem"), cacheDirectory: cache))
            XCTFail("a CA file that does not exist was accepted")
        } catch {
            XCTAssertEqual(error.field, "tls")
            XCTAssertTrue(error.message.contains("/nonexistent/ca.pem"), error.message)
        }
        do {
            _ = try FuseboxEndpoint.list(parsing: "a:7443,,b:7443")
            XCTFail("an empty entry was accepted")
        } catch {
            XCTAssertEqual(error.field, "endpoints")
            XCTAssertTrue(error.message.contains("empty entry"), error.message)
        }
    }
}
