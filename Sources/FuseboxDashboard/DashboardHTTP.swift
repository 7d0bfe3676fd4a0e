import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP request, read whole (bodies are bounded).
struct DashboardRequest: Sendable {
    var method: HTTPMethod
    /// The path without the query.
    var path: String
    /// Query parameters (the last value of a repeated name wins).
    var query: [String: String]
    var headers: HTTPHeaders
    /// nil when the body was over the limit.
    var body: [UInt8]?
    /// The peer's address, without port.
    var remote: String

    init(head: HTTPRequestHead, body: [UInt8]?, remote: String) {
        method = head.method
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = parts.first.map { FormCoding.percentDecoded(String($0), plusIsSpace: false) } ?? "/"
        query = parts.count > 1 ? FormCoding.decode(String(parts[1])) : [:]
        headers = head.headers
        self.body = body
        self.remote = remote
    }

    /// The value of cookie `name`.
    func cookie(_ name: String) -> String? {
        for header in headers["cookie"] {
            for pair in header.split(separator: ";") {
                let kv = pair.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0] == name { return String(kv[1]) }
            }
        }
        return nil
    }

    /// The form fields of an `application/x-www-form-urlencoded` body.
    var form: [String: String] {
        guard let body else { return [:] }
        return FormCoding.decode(String(decoding: body, as: UTF8.self))
    }
}

/// An answer: status, headers and a whole body.
struct DashboardResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: [(String, String)] = []
    var body: [UInt8] = []

    static func json(_ value: some Encodable, status: HTTPResponseStatus = .ok) -> DashboardResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(value)).map(Array.init) ?? Array(#"{"error":{"code":"internal","message":"could not encode"}}"#.utf8)
        return DashboardResponse(status: status, headers: [("content-type", "application/json; charset=utf-8")], body: body)
    }

    /// `{"error": {"code": …, "message": …}}`.
    static func error(_ status: HTTPResponseStatus, _ code: String, _ message: String) -> DashboardResponse {
        json(["error": ["code": code, "message": message]], status: status)
    }

    static func html(_ status: HTTPResponseStatus = .ok, _ text: String) -> DashboardResponse {
        DashboardResponse(status: status, headers: [("content-type", "text/html; charset=utf-8")], body: Array(text.utf8))
    }

    static func redirect(_ location: String) -> DashboardResponse {
        DashboardResponse(status: .seeOther, headers: [("location", location)])
    }
}

/// A response is also what a helper returns when it cannot go on.
extension DashboardResponse: Error {}

/// `application/x-www-form-urlencoded` and query strings.
enum FormCoding {
    static func decode(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecoded(String(kv[0]), plusIsSpace: true)
            result[name] = kv.count > 1 ? percentDecoded(String(kv[1]), plusIsSpace: true) : ""
        }
        return result
    }

    /// Decodes %XX escapes (and `+` as a space in forms); a malformed escape stays as it is.
    static func percentDecoded(_ text: String, plusIsSpace: Bool) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var input = Array(text.utf8)[...]
        while let c = input.popFirst() {
            if c == UInt8(ascii: "+"), plusIsSpace {
                bytes.append(UInt8(ascii: " "))
            } else if c == UInt8(ascii: "%"), input.count >= 2, let hi = hex(input[input.startIndex]), let lo = hex(input[input.startIndex + 1]) {
                bytes.append(hi << 4 | lo)
                input = input.dropFirst(2)
            } else {
                bytes.append(c)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Text for HTML pages.
enum HTMLText {
    static func escaped(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }
}
