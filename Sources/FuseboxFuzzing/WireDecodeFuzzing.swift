import FuseboxWire

/// The `wire-decode` target: the first byte picks one of the API's message
/// types (`allWireMessageTypes`: every fusebox.v1 message, and the etcd and
/// gRPC health messages the server and client also decode), the rest is
/// decoded as that type. Bad bytes must end in a `WireError`; bytes that
/// decode must encode, and that encoding must decode to the same value.
enum WireDecodeFuzzing {
    static func run(_ input: [UInt8]) throws(FuzzFinding) {
        guard let first = input.first else { return }
        let types = allWireMessageTypes
        if let finding = types[Int(first) % types.count].fuzzRoundTrip(Array(input.dropFirst())) { throw finding }
    }
}

extension WireMessage {
    /// Decodes, re-encodes and decodes again; a finding when that disagrees.
    fileprivate static func fuzzRoundTrip(_ bytes: [UInt8]) -> FuzzFinding? {
        do {
            try roundTrip(bytes)
            return nil
        } catch {
            return error
        }
    }

    private static func roundTrip(_ bytes: [UInt8]) throws(FuzzFinding) {
        typealias Message = Self
        let decoded: Message
        do {
            decoded = try Message(decoding: bytes)
        } catch {
            return  // a typed WireError: what bad input must give
        }
        let encoded: [UInt8]
        do {
            encoded = try decoded.encode()
        } catch {
            throw FuzzFinding(.wireDecode, "\(Message.protoName) decoded from \(bytes) but does not encode: \(error)")
        }
        let again: Message
        do {
            again = try Message(decoding: encoded)
        } catch {
            throw FuzzFinding(.wireDecode, "\(Message.protoName) re-encoded as \(encoded) does not decode: \(error)")
        }
        // A value holding a NaN is not equal even to itself; then decoding
        // again without error is all that can be checked.
        guard decoded == decoded else { return }
        guard again == decoded else {
            throw FuzzFinding(.wireDecode, "\(Message.protoName) decoded from \(bytes) as \(decoded), re-encoded and decoded as \(again)")
        }
    }
}
