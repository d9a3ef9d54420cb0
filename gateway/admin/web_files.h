// The static files of the web chat page (web/), served by the admin HTTP server with --web-root: GET and
// HEAD of any path outside /v1, without the bearer token (the page holds no secret). "/" is chat.html.
// Only plain names under the root with a known extension are served, and a file is resolved again to
// check it is still under the root, so neither "..", an absolute path, a hidden file nor a symlink placed
// inside the root leads a request elsewhere. cpp-httplib's set_mount_point is not used: it serves "/" only
// as index.html, accepts ".." that stays inside the root, follows symlinks out of it, and would sit behind
// the token check.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace httplib {
struct Response;
}

namespace longlink::gateway::admin {

// The file under the web root that a request path names, relative to the root: "/" is "chat.html";
// otherwise components of [A-Za-z0-9._-] separated by single '/', none "." or ".." and none starting
// with '.' (InvalidArgument). A name whose extension has no WebContentType is NotFound.
absl::StatusOr<std::string> WebFilePath(absl::string_view url_path);
// The Content-Type served for a file name, or nullptr when files of that extension are not served.
const char* WebContentType(absl::string_view name);

// Answers a GET or HEAD of `url_path` from `root` (absolute and resolved, Config::web_root).
void ServeWebFile(const std::string& root, const std::string& url_path, httplib::Response& res);

}  // namespace longlink::gateway::admin
