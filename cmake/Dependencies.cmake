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
