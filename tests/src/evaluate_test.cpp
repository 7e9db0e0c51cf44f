// Measurement helpers (src/tasks/evaluate.h): the exact McNemar test against binomial sums written out
// by hand.
#include "tasks/evaluate.h"
#include "test_util.h"

namespace pare {
namespace {

TEST(McNemarExact, MatchesBinomialSumsByHand) {
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(0, 5), 2.0 / 32.0);                         // 2 · C(5,0) / 2⁵
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(5, 0), 2.0 / 32.0);                         // symmetric
  EXPECT_NEAR(mcnemar_exact_p(7, 3), 2.0 * (1 + 10 + 45 + 120) / 1024.0, 1e-12);  // n = 10, i ≤ 3
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(4, 4), 1.0);
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(1, 2), 1.0);  // 2 · (1 + 3) / 8 = 1
  EXPECT_NEAR(mcnemar_exact_p(0, 100) / std::pow(2.0, -99), 1.0, 1e-9);  // n large: log space
  EXPECT_THROW(mcnemar_exact_p(-1, 3), InternalError);
}

}  // namespace
}  // namespace pare
