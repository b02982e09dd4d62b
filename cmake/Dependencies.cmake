# Third-party libraries, all from Debian packages (scripts/install-deps.sh).
# docs/architecture.md says why each one is here.
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(GTest REQUIRED)
include(GoogleTest)
if(MALV_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
find_package(PkgConfig REQUIRED)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
find_package(ZLIB REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(tomlplusplus REQUIRED)

# The CUDA toolkit, optional: when found, the CUDA backend plugin is built
# (src/accel/cuda). Without it configure goes on and `--backend cuda` says
# the backend is not built. CI has the toolkit (with the driver stub) but no
# GPU, so the plugin always compiles and links there.
option(MALV_WITH_CUDA "Build the CUDA backend when the CUDA toolkit is found" ON)
set(MALV_CUDA_FOUND OFF)
if(MALV_WITH_CUDA)
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND AND CUDAToolkit_NVCC_EXECUTABLE AND TARGET CUDA::cuda_driver
     AND TARGET CUDA::cublas)
    set(MALV_CUDA_FOUND ON)
    message(STATUS "CUDA toolkit ${CUDAToolkit_VERSION} (${CUDAToolkit_NVCC_EXECUTABLE}): "
                   "building the CUDA backend")
  else()
    message(STATUS "CUDA toolkit not found: the CUDA backend is not built "
                   "(malv --backend cuda will say so; auto uses the CPU)")
  endif()
else()
  message(STATUS "MALV_WITH_CUDA=OFF: the CUDA backend is not built")
endif()
