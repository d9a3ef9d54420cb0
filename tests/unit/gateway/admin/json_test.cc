#include "gateway/admin/json.h"

#include <gtest/gtest.h>

#include <string>

#include "gateway/admin/web_files.h"

namespace longlink::gateway::admin {
namespace {

TEST(AdminJsonTest, ParsesObjectsAndSaysWhereBadJsonBreaks) {
  absl::StatusOr<Json> v = ParseObject(R"({"users":[1,2],"payload":"hi \u00e9"})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)["payload"].get<std::string>(), "hi \xc3\xa9");
  absl::StatusOr<Json> bad = ParseObject("{\"users\": [1,");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("invalid JSON"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("column"), std::string::npos) << bad.status();
  EXPECT_EQ(bad.status().message().find("json.exception"), std::string::npos) << bad.status();
  EXPECT_NE(ParseObject("[1]").status().message().find("must be a JSON object"), std::string::npos);
  EXPECT_NE(ParseObject("\"text\"").status().message().find("must be a JSON object"), std::string::npos);
  EXPECT_FALSE(ParseObject("{} trailing").ok());
  EXPECT_FALSE(ParseObject("{\"a\":\"\xff\"}").ok()) << "invalid UTF-8 is refused";
}

TEST(AdminJsonTest, RefusesDeepNestingAndHugeBodies) {
  std::string deep = "{\"a\":" + std::string(kMaxDepth + 5, '[') + std::string(kMaxDepth + 5, ']') + "}";
  absl::StatusOr<Json> v = ParseObject(deep);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("nested deeper"), std::string::npos) << v.status();
  // 100,000 levels would overflow a recursive parser's stack; it is refused at level 17.
  EXPECT_FALSE(ParseObject(std::string(100000, '[')).ok());
  std::string ok_depth = "{\"a\":" + std::string(kMaxDepth - 1, '[') + std::string(kMaxDepth - 1, ']') + "}";
  EXPECT_TRUE(ParseObject(ok_depth).ok()) << ParseObject(ok_depth).status();
  std::string big = "{\"payload\":\"" + std::string(kMaxBodyBytes, 'x') + "\"}";
  EXPECT_NE(ParseObject(big).status().message().find("larger than"), std::string::npos);
}

TEST(AdminJsonTest, IdListsAndIds) {
  Json body = Json::parse(R"({"users":[1,18446744073709551615],"bad":[0],"neg":[-1],"flt":[1.5],
                             "str":["7"],"notarray":3,"group":7,"zero":0,"big":4294967296})");
  absl::StatusOr<std::vector<uint64_t>> users = IdList(body, "users");
  ASSERT_TRUE(users.ok());
  EXPECT_EQ(*users, (std::vector<uint64_t>{1, 18446744073709551615ull}));
  EXPECT_TRUE(IdList(body, "absent")->empty());
  for (const char* k : {"bad", "neg", "flt", "str"}) {
    absl::StatusOr<std::vector<uint64_t>> r = IdList(body, k);
    ASSERT_FALSE(r.ok()) << k;
    EXPECT_NE(r.status().message().find("positive integer ids"), std::string::npos) << r.status();
  }
  EXPECT_NE(IdList(body, "notarray").status().message().find("must be an array"), std::string::npos);
  Json many = {{"users", Json::array()}};
  for (size_t i = 0; i <= kMaxIdsPerRequest; ++i) many["users"].push_back(i + 1);
  EXPECT_NE(IdList(many, "users").status().message().find("more than"), std::string::npos);

  EXPECT_EQ(*OptionalId(body, "group"), 7u);
  EXPECT_EQ(*OptionalId(body, "absent"), 0u);
  EXPECT_FALSE(OptionalId(body, "zero").ok());
  EXPECT_FALSE(OptionalId(body, "str").ok());
  EXPECT_FALSE(OptionalId(body, "big", 0xffffffffu).ok());
  EXPECT_NE(OptionalId(body, "big", 0xffffffffu).status().message().find("up to 4294967295"), std::string::npos);
}

TEST(AdminJsonTest, Base64AndErrorBodies) {
  EXPECT_EQ(*Base64Decode("AP9iaW4="), std::string("\x00\xff" "bin", 5));
  EXPECT_EQ(*Base64Decode("AP9iaW4"), std::string("\x00\xff" "bin", 5));  // padding optional
  EXPECT_EQ(*Base64Decode("-_8"), std::string("\xfb\xff"));              // URL-safe alphabet
  EXPECT_FALSE(Base64Decode("!!").ok());
  EXPECT_FALSE(Base64Decode("A").ok());
  EXPECT_EQ(ErrorBody("bad \"x\"\n"), R"({"error":"bad \"x\"\n"})");
  EXPECT_EQ(ErrorBody("\xff"), "{\"error\":\"\xef\xbf\xbd\"}") << "invalid UTF-8 is replaced, not thrown";
}

TEST(AdminWebFilesTest, OnlyPlainNamesUnderTheRoot) {
  EXPECT_EQ(*WebFilePath("/"), "chat.html");
  EXPECT_EQ(*WebFilePath("/chat.js"), "chat.js");
  EXPECT_EQ(*WebFilePath("/img/a-b_c.png"), "img/a-b_c.png");
  for (const char* bad : {"/../etc/passwd", "//etc/passwd", "/a//b.js", "/.hidden.js", "/a/../b.js", "/x y.js",
                          "relative.js", "/a/./b.js", "/%2e%2e/x.js"}) {
    absl::StatusOr<std::string> r = WebFilePath(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(WebFilePath("/secret.key").status().code(), absl::StatusCode::kNotFound);
  EXPECT_STREQ(WebContentType("a.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(WebContentType(".js"), nullptr);
  EXPECT_EQ(WebContentType("a.exe"), nullptr);
}

}  // namespace
}  // namespace longlink::gateway::admin
