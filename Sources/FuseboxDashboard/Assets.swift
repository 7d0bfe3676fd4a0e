import NIOHTTP1

/// The dashboard's files, compiled into the binary (`embedInCode`): the
/// page needs nothing from anywhere else.
enum Assets {
    static let indexHTML = String(decoding: PackageResources.index_html, as: UTF8.self)
    static let loginHTML = String(decoding: PackageResources.login_html, as: UTF8.self)
    static let appJS: [UInt8] = PackageResources.app_js
    static let appCSS: [UInt8] = PackageResources.app_css

    /// A static file, cacheable for an hour.
    static func response(_ bytes: [UInt8], type: String) -> DashboardResponse {
        DashboardResponse(status: .ok, headers: [("content-type", type), ("cache-control", "private, max-age=3600")], body: bytes)
    }
}
