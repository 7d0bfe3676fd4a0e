import FuseboxRPC
import XCTest

/// Parsing of `--server a:7443,b:7443` and of single endpoints.
final class RPCEndpointTests: XCTestCase {
    func testSingleEndpointsParse() throws {
        XCTAssertEqual(try RPCEndpoint(parsing: "127.0.0.1:7443"), RPCEndpoint(host: "127.0.0.1", port: 7443))
        XCTAssertEqual(try RPCEndpoint(parsing: "fusebox.internal:1"), RPCEndpoint(host: "fusebox.internal", port: 1))
        XCTAssertEqual(try RPCEndpoint(parsing: "[::1]:7443"), RPCEndpoint(host: "::1", port: 7443))
        XCTAssertEqual(try RPCEndpoint(parsing: " https://a:7443/ "), RPCEndpoint(host: "a", port: 7443))
        XCTAssertEqual(RPCEndpoint(host: "::1", port: 7443).description, "[::1]:7443")
        XCTAssertEqual(RPCEndpoint(host: "a", port: 7443).description, "a:7443")
    }

    func testListsParseInOrder() throws {
        let list = try RPCEndpoints(parsing: "a:7443, b:7444 ,[::1]:7445")
        XCTAssertEqual(
            list.all,
            [
                RPCEndpoint(host: "a", port: 7443), RPCEndpoint(host: "b", port: 7444),
                RPCEndpoint(host: "::1", port: 7445),
            ])
        XCTAssertEqual(list.first, RPCEndpoint(host: "a", port: 7443))
        XCTAssertEqual(list.description, "a:7443,b:7444,[::1]:7445")
        XCTAssertEqual(try RPCEndpoints(parsing: "127.0.0.1:7443").all, [RPCEndpoint(host: "127.0.0.1", port: 7443)])
    }

    func testMalformedInputIsRejectedWithWhatToWrite() {
        let cases: [(String, String)] = [
            ("", "empty entry"),
            ("a:7443,,b:7443", "empty entry (number 2)"),
            ("a:7443,", "empty entry (number 2)"),
            ("a", "not HOST:PORT"),
            ("a:0", "port in 1...65535"),
            ("a:65536", "port in 1...65535"),
            ("a:http", "not HOST:PORT"),
            (":7443", "has no host"),
            ("::1:7443", "without brackets"),
            ("a:7443,a:7443", "listed twice"),
        ]
        for (text, expected) in cases {
            do throws(RPCError) {
                let parsed = try RPCEndpoints(parsing: text)
                XCTFail("\"\(text)\" parsed as \(parsed)")
            } catch {
                XCTAssertEqual(error.code, .invalidArgument, text)
                XCTAssertTrue(error.message.contains(expected), "\"\(text)\": \(error.message)")
            }
        }
        XCTAssertThrowsError(try RPCEndpoints([])) { XCTAssertTrue("\($0)".contains("no endpoints")) }
    }
}
