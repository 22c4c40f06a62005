#include <gtest/gtest.h>

#include "engine/stop_strings.h"

namespace hs {
namespace {

TEST(StopStrings, HoldsBackPossiblePrefixesAndCutsAtTheMatch) {
  StopStringFilter f({"</end>", "STOP"});
  EXPECT_EQ(f.push("hello </"), "hello ");
  EXPECT_EQ(f.push("e"), "");
  EXPECT_EQ(f.push("x"), "</ex");  // no longer a prefix
  EXPECT_EQ(f.push(" ST"), " ");
  EXPECT_EQ(f.push("OP and more"), "");
  EXPECT_TRUE(f.matched());
  EXPECT_EQ(f.push("later"), "");
  EXPECT_EQ(f.flush(), "");
}

TEST(StopStrings, EarliestMatchWinsAndFlushReleasesTheRest) {
  StopStringFilter f({"bc", "ab"});
  EXPECT_EQ(f.push("xabc"), "x");
  EXPECT_TRUE(f.matched());
  StopStringFilter g({"###"});
  EXPECT_EQ(g.push("a#"), "a");
  EXPECT_EQ(g.push("#"), "");
  EXPECT_EQ(g.flush(), "##");
  EXPECT_FALSE(g.matched());
  StopStringFilter none({});
  EXPECT_EQ(none.push("anything"), "anything");
}

TEST(StopStrings, MultiByteCharactersAreNotSplit) {
  StopStringFilter f({"é!"});
  // "é" is two bytes; held whole as a prefix of the stop string, released whole.
  EXPECT_EQ(f.push("caf\xC3\xA9"), "caf");
  EXPECT_EQ(f.push("?"), "\xC3\xA9?");
}

}  // namespace
}  // namespace hs
