/// Small pieces of the gRPC wire format (grpc/grpc doc/PROTOCOL-HTTP2.md).
enum GRPCWire {
    /// Parses `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
    /// Returns nanoseconds.
    static func parseTimeout(_ text: String) -> Int64? {
        guard let unit = text.last, text.count >= 2, text.count <= 9 else { return nil }
        let digits = text.dropLast()
        guard digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let value = Int64(digits) else { return nil }
        let nanos: Int64
        switch unit {
        case "H": nanos = 3_600_000_000_000
        case "M": nanos = 60_000_000_000
        case "S": nanos = 1_000_000_000
        case "m": nanos = 1_000_000
        case "u": nanos = 1_000
        case "n": nanos = 1
        default: return nil
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: nanos)
        return overflow ? Int64.max : product
    }

    /// Formats a timeout for `grpc-timeout`, in the finest unit that fits 8 digits.
    static func formatTimeout(nanoseconds: Int64) -> String {
        let n = max(nanoseconds, 1)
        for (unit, size) in [("n", Int64(1)), ("u", 1_000), ("m", 1_000_000), ("S", 1_000_000_000), ("M", 60_000_000_000)] {
            let value = (n + size - 1) / size
            if value < 100_000_000 { return "\(value)\(unit)" }
        }
        return "\(min((n + 3_599_999_999_999) / 3_600_000_000_000, 99_999_999))H"
    }

    /// Percent-encodes `grpc-message`: bytes outside printable ASCII and '%'.
    static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if byte >= 0x20, byte <= 0x7E, byte != 0x25 {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// Decodes a percent-encoded `grpc-message`; malformed escapes stay as they are.
    static func percentDecode(_ text: String) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == 0x25, utf8.count >= 2,
                let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
