import NIOHPACK

/// The parsed request HEADERS of a call.
struct RequestHead {
    enum Rejection: Error {
        /// Answer with this HTTP status (not gRPC at all).
        case http(String)
        /// Answer with this gRPC status.
        case grpc(RPCError)
    }

    var path: String
    var timeoutNanoseconds: Int64?
    var metadata: RPCMetadata

    static func parse(_ headers: HPACKHeaders) -> Result<RequestHead, Rejection> {
        guard headers.first(name: ":method") == "POST" else { return .failure(.http("405")) }
        guard let contentType = headers.first(name: "content-type"), contentType.hasPrefix("application/grpc") else {
            return .failure(.http("415"))
        }
        guard contentType == "application/grpc" || contentType.hasPrefix("application/grpc+proto")
            || contentType.hasPrefix("application/grpc;")
        else {
            return .failure(.grpc(RPCError(.internal, "content-type \(contentType) is not supported; use application/grpc+proto")))
        }
        guard let path = headers.first(name: ":path"), path.hasPrefix("/") else {
            return .failure(.grpc(RPCError(.unimplemented, "missing :path")))
        }
        if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity" {
            var trailers = RPCMetadata()
            trailers.add("grpc-accept-encoding", "identity")
            return .failure(.grpc(RPCError(.unimplemented, "grpc-encoding \(encoding) is not supported", metadata: trailers)))
        }
        var timeout: Int64?
        if let text = headers.first(name: "grpc-timeout") {
            guard let parsed = GRPCWire.parseTimeout(text) else {
                return .failure(.grpc(RPCError(.invalidArgument, "grpc-timeout \"\(text)\" is malformed")))
            }
            timeout = parsed
        }
        do {
            let metadata = try RPCMetadata(headers: headers.map { ($0.name, $0.value) })
            return .success(RequestHead(path: path, timeoutNanoseconds: timeout, metadata: metadata))
        } catch {
            return .failure(.grpc(error))
        }
    }
}
