import CProtobufC
import FuseboxWire

/// fuseboxd's version; the API it serves is `fusebox.v1`.
let fuseboxdVersion = "0.1.0"

let arguments = CommandLine.arguments.dropFirst()
if arguments.contains("--help") || arguments.contains("-h") {
    print("""
        USAGE: fuseboxd --version

        Prints the server's version, the API version and the protobuf-c library it was linked with.
        """)
} else {
    print("fuseboxd \(fuseboxdVersion)")
    print("api: fusebox.v1 (\(allWireMessageTypes.count) message types)")
    print("protobuf-c: \(String(cString: protobuf_c_version()))")
}
