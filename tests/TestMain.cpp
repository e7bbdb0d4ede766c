// GoogleTest main for Lathe's engine tests: registers the backends once.
#include <gtest/gtest.h>

#include "core/tensor/Random.h"
#include "kernels/Backends.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  lathe::registerBackends();
  lathe::manualSeed(1234);
  return RUN_ALL_TESTS();
}
