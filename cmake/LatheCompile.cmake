# Compile flags shared by every Lathe target: warnings, sanitizers, the strict set for the engine.
if(LATHE_SANITIZE)
  add_compile_options(-fsanitize=${LATHE_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${LATHE_SANITIZE})
endif()

# Warnings as errors for core/ and kernels/ (STYLE.md); applied per target. LATHE_WERROR=OFF
# keeps the warnings but lets other compilers build: scripts/gpu-check uses it, because g++ 13
# on the GPU machine reports false stringop-overflow positives inside libstdc++'s vector.
option(LATHE_WERROR "Treat warnings in core/ and kernels/ as errors" ON)
function(lathe_strict_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-error=deprecated-declarations>)
  if(LATHE_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
endfunction()
