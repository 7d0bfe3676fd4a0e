import FuseboxRPC
import NIOCore

/// The `grpc-deframer` target. Input: 2 bytes of maximum message size, 1 byte
/// seeding where the stream is split into chunks (0: one chunk), then the
/// stream. Checks what the server relies on: no message over the limit, the
/// bytes add up, and chunking changes nothing (the same messages and the same
/// failure as when the stream arrives in one piece).
enum GRPCDeframerFuzzing {
    private enum Outcome: Equatable {
        case messages([[UInt8]], buffered: Int)
        case failed([[UInt8]], GRPCMessageDeframer.Failure)
    }

    static func run(_ input: [UInt8]) throws(FuzzFinding) {
        var reader = FuzzInputReader(input)
        let limit = Int(reader.uint16())
        let seed = reader.byte()
        let stream = reader.rest
        let chunked = try deframe(fuzzChunks(stream, seed: seed, maximumChunk: 64), limit: limit)
        let whole = try deframe([stream], limit: limit)
        guard chunked == whole else {
            throw FuzzFinding(.grpcDeframer, "limit \(limit): in chunks (seed \(seed)) \(chunked), in one piece \(whole)")
        }
    }

    private static func deframe(_ chunks: [ArraySlice<UInt8>], limit: Int) throws(FuzzFinding) -> Outcome {
        var deframer = GRPCMessageDeframer(maximumMessageBytes: limit)
        var messages: [[UInt8]] = []
        var fed = 0
        for chunk in chunks {
            deframer.append(ByteBuffer(bytes: chunk))
            fed += chunk.count
            while true {
                let message: [UInt8]?
                do {
                    message = try deframer.next()
                } catch {
                    return .failed(messages, error)
                }
                guard let message else { break }
                guard message.count <= limit else {
                    throw FuzzFinding(.grpcDeframer, "a message of \(message.count) bytes passed the limit of \(limit)")
                }
                messages.append(message)
            }
        }
        let consumed = messages.reduce(0) { $0 + 5 + $1.count }
        guard consumed + deframer.bufferedBytes == fed else {
            throw FuzzFinding(
                .grpcDeframer, "fed \(fed) bytes; \(consumed) in messages and \(deframer.bufferedBytes) buffered do not add up")
        }
        return .messages(messages, buffered: deframer.bufferedBytes)
    }
}
