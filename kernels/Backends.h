// One call that registers every backend this build has (CPU always, CUDA when built and a GPU
// is present). Executables and test mains call it once at start-up.
#pragma once

namespace lathe {

void registerBackends();
// True when this build includes the CUDA backend (a GPU may still be absent).
bool builtWithCuda();

}  // namespace lathe
