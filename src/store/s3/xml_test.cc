#include "src/store/s3/xml.h"

#include <doctest/doctest.h>

using namespace portalbd::s3;

TEST_SUITE("s3.xml") {
  TEST_CASE("ListBucketResult with entities, namespaces and pagination") {
    const char* doc = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>vol/</Prefix><KeyCount>2</KeyCount>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>vol/a&amp;b &lt;c&gt;</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag></Contents>
  <Contents><Key>vol/caf&#233;&#x2603;</Key><Size>0</Size></Contents>
</ListBucketResult>)";
    auto r = parse_xml(doc);
    REQUIRE(r.ok());
    CHECK(r->name == "ListBucketResult");
    CHECK(r->child_text("IsTruncated") == "true");
    CHECK(r->child_text("NextContinuationToken") == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    auto contents = r->children_named("Contents");
    REQUIRE(contents.size() == 2);
    CHECK(contents[0]->child_text("Key") == "vol/a&b <c>");
    CHECK(contents[0]->child_text("ETag") == "\"abc\"");
    CHECK(contents[1]->child_text("Key") == "vol/caf\xc3\xa9\xe2\x98\x83");
    CHECK(r->child_text("Missing").empty());
  }
  TEST_CASE("Error document, self-closing and CDATA") {
    auto r = parse_xml("<Error><Code>NoSuchBucket</Code><Message><![CDATA[a <b>]]></Message><Empty/></Error>");
    REQUIRE(r.ok());
    CHECK(r->child_text("Code") == "NoSuchBucket");
    CHECK(r->child_text("Message") == "a <b>");
    CHECK(r->child("Empty") != nullptr);
  }
  TEST_CASE("malformed documents are errors, never guesses") {
    CHECK_FALSE(parse_xml("").ok());
    CHECK_FALSE(parse_xml("<a><b></a>").ok());
    CHECK_FALSE(parse_xml("<a>&bogus;</a>").ok());
    // Character references: digits only, of a character XML allows.
    for (const char* bad : {"&#-1;", "&#12abc;", "&# 65;", "&#+65;", "&#x;", "&#;", "&#0;", "&#x110000;", "&#xD800;",
                            "&#99999999999999999999;"}) {
      CHECK_MESSAGE(!parse_xml(std::string("<a>") + bad + "</a>").ok(), bad);
    }
    auto good = parse_xml("<a>&#65;&#x42;&#X43;&#x10FFFF;</a>");
    REQUIRE(good.ok());
    CHECK(good->text == "ABC\xf4\x8f\xbf\xbf");
    CHECK_FALSE(parse_xml("<a>unterminated").ok());
    CHECK_FALSE(parse_xml("<a></a><b></b>").ok());
    std::string deep;
    for (int i = 0; i < 100; ++i) deep += "<a>";
    CHECK_FALSE(parse_xml(deep).ok());
  }
  TEST_CASE("escape round-trips through the parser") {
    std::string text = "k&<>\"' \xe2\x98\x83";
    auto r = parse_xml("<Key>" + xml_escape(text) + "</Key>");
    REQUIRE(r.ok());
    CHECK(r->text == text);
  }
}
