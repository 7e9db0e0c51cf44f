// AnalysisManager: lazy computation, caching, invalidation by PreservedAnalyses (the LLVM
// PassManagerTest idea: analyses count their own runs).
#include <gtest/gtest.h>

#include "pipeline/pass.h"

namespace pare {
namespace {

int g_data_runs = 0, g_shape_runs = 0, g_value_runs = 0;

struct DataA {
  using Result = int;
  static constexpr const char* kName = "data-a";
  static constexpr AnalysisDependsOn kDepends = AnalysisDependsOn::kData;
  static Result run(const Model&, AnalysisManager&, const PassContext&) { return ++g_data_runs; }
};
struct ShapeA {
  using Result = int;
  static constexpr const char* kName = "shape-a";
  static constexpr AnalysisDependsOn kDepends = AnalysisDependsOn::kShapes;
  static Result run(const Model&, AnalysisManager&, const PassContext&) { return ++g_shape_runs; }
};
struct ValueA {
  using Result = int;
  static constexpr const char* kName = "value-a";
  static constexpr AnalysisDependsOn kDepends = AnalysisDependsOn::kValues;
  // Depends on ShapeA through the manager (nested analyses are cached too).
  static Result run(const Model& m, AnalysisManager& am, const PassContext& c) {
    return 100 * am.get<ShapeA>(m, c) + ++g_value_runs;
  }
};

TEST(AnalysisManager, CachesUntilInvalidated) {
  Model m;
  PassContext ctx;
  AnalysisManager am;
  EXPECT_EQ(am.runs("value-a"), 0);
  EXPECT_EQ(am.get<ValueA>(m, ctx), 101);
  EXPECT_EQ(am.get<ValueA>(m, ctx), 101);
  EXPECT_EQ(am.get<ShapeA>(m, ctx), 1);
  EXPECT_EQ(am.get<DataA>(m, ctx), 1);
  EXPECT_EQ(am.runs("value-a"), 1);
  EXPECT_EQ(am.runs("shape-a"), 1);

  am.invalidate(PreservedAnalyses::all());
  EXPECT_TRUE(am.cached<ValueA>());

  am.invalidate(PreservedAnalyses::shapes());  // values changed, shapes kept
  EXPECT_FALSE(am.cached<ValueA>());
  EXPECT_TRUE(am.cached<ShapeA>());
  EXPECT_EQ(am.get<ValueA>(m, ctx), 102);
  EXPECT_EQ(am.runs("shape-a"), 1);

  am.invalidate(PreservedAnalyses::none());  // shapes changed
  EXPECT_FALSE(am.cached<ShapeA>());
  EXPECT_FALSE(am.cached<ValueA>());
  EXPECT_TRUE(am.cached<DataA>());  // depends on the data only
  EXPECT_EQ(am.get<ValueA>(m, ctx), 203);
  EXPECT_EQ(am.runs("shape-a"), 2);
  EXPECT_EQ(am.runs("data-a"), 1);
}

}  // namespace
}  // namespace pare
