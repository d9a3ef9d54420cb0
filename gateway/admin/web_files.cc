#include "gateway/admin/web_files.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway/admin/json.h"
#include "httplib.h"

namespace longlink::gateway::admin {
namespace {

constexpr off_t kMaxWebFileBytes = 4 << 20;

void NotServed(httplib::Response& res, int status, absl::string_view why) {
  res.status = status;
  res.set_content(ErrorBody(why), "application/json");
}

}  // namespace

absl::StatusOr<std::string> WebFilePath(absl::string_view url_path) {
  if (url_path == "/") return std::string("chat.html");
  if (url_path.empty() || url_path[0] != '/' || url_path.size() > 256) {
    return absl::InvalidArgumentError("bad path");
  }
  url_path.remove_prefix(1);
  for (absl::string_view part : absl::StrSplit(url_path, '/')) {
    // Empty parts cover "//x" (absolute once joined) and "a//b"; a leading '.' covers ".", ".." and dotfiles.
    if (part.empty() || part[0] == '.') return absl::InvalidArgumentError("bad path");
    for (char c : part) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                c == '_' || c == '-';
      if (!ok) return absl::InvalidArgumentError("bad path");
    }
  }
  if (WebContentType(url_path) == nullptr) return absl::NotFoundError("not found");
  return std::string(url_path);
}

const char* WebContentType(absl::string_view name) {
  static constexpr std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},   {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},     {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},   {".png", "image/png"},
      {".svg", "image/svg+xml"},               {".ico", "image/x-icon"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (absl::EndsWith(name, ext) && name.size() > strlen(ext)) return type;
  }
  return nullptr;
}

void ServeWebFile(const std::string& root, const std::string& url_path, httplib::Response& res) {
  absl::StatusOr<std::string> rel = WebFilePath(url_path);
  if (!rel.ok()) return NotServed(res, absl::IsNotFound(rel.status()) ? 404 : 400, rel.status().message());
  // The name is already confined to the root; resolving it as well keeps a symlink placed inside the root
  // from pointing a request elsewhere.
  std::string full = absl::StrCat(root, "/", *rel);
  char resolved[PATH_MAX];
  struct stat st {};
  if (realpath(full.c_str(), resolved) == nullptr || !absl::StartsWith(resolved, absl::StrCat(root, "/")) ||
      stat(resolved, &st) != 0 || !S_ISREG(st.st_mode)) {
    return NotServed(res, 404, "not found");
  }
  if (st.st_size > kMaxWebFileBytes) return NotServed(res, 404, "not found");
  std::ifstream in(resolved, std::ios::binary);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return NotServed(res, 500, "cannot read the file");
  res.status = 200;
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Cache-Control", "no-cache");
  res.set_header("Content-Security-Policy",
                 "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'");
  res.set_content(body, WebContentType(*rel));
}

}  // namespace longlink::gateway::admin
