# malv_component(NAME SOURCES ... DEPS ...)
#
# Declares the static library malv_<NAME> for the folder src/<NAME>.
# Each component gets a private include root that contains only itself
# (build/include-shims/<NAME>/<NAME> -> src/<NAME>), so `#include "vgpu/..."`
# compiles only in components that link malv_vgpu. This is how the dependency
# direction of ARCHITECTURE.md is enforced: a lower folder cannot see the
# headers of a higher one, because it does not link it.
#
# The public headers in include/malv/ are reached the same way: every
# component sees the ones listed in MALV_SHARED_PUBLIC_HEADERS (the MLaaS
# ABI, the protocol (and its ATen record), the built-in kernels' names, Result/Error) through
# build/include-shims/public/malv/; the rest of include/malv/ is libmalv's
# client API, which only components that link malv_guest see
# (build/include-shims/client/malv/, added by src/guest). Installed, they all
# sit together in <prefix>/include/malv/.
set(MALV_SHARED_PUBLIC_HEADERS mlaas.h memory_features.h mllb_features.h prefetch_features.h sjf_features.h protocol.h aten_record.h kernels.h result.h error.h)

function(malv_public_header_shims)
  file(GLOB public_headers CONFIGURE_DEPENDS RELATIVE "${PROJECT_SOURCE_DIR}/include/malv"
       "${PROJECT_SOURCE_DIR}/include/malv/*.h")
  foreach(kind public client)
    file(REMOVE_RECURSE "${CMAKE_BINARY_DIR}/include-shims/${kind}")
    file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/include-shims/${kind}/malv")
  endforeach()
  foreach(header IN LISTS public_headers)
    if(header IN_LIST MALV_SHARED_PUBLIC_HEADERS)
      set(kind public)
    else()
      set(kind client)
    endif()
    file(CREATE_LINK "${PROJECT_SOURCE_DIR}/include/malv/${header}"
         "${CMAKE_BINARY_DIR}/include-shims/${kind}/malv/${header}" SYMBOLIC)
  endforeach()
endfunction()
malv_public_header_shims()

function(malv_component name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  set(shim "${CMAKE_BINARY_DIR}/include-shims/${name}")
  file(MAKE_DIRECTORY "${shim}")
  if(NOT EXISTS "${shim}/${name}")
    file(CREATE_LINK "${CMAKE_CURRENT_SOURCE_DIR}" "${shim}/${name}" SYMBOLIC)
  endif()
  add_library(malv_${name} STATIC ${ARG_SOURCES})
  target_include_directories(malv_${name} PUBLIC "${shim}" "${CMAKE_BINARY_DIR}/include-shims/public")
  target_link_libraries(malv_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# malv_test(NAME LABEL SOURCES ... DEPS ...)
#
# A GoogleTest program whose tests are registered with CTest one by one and
# carry LABEL (unit, integration, gpu or slow).
function(malv_test name)
  cmake_parse_arguments(ARG "" "LABEL;TIMEOUT" "SOURCES;DEPS" ${ARGN})
  if(NOT ARG_LABEL)
    set(ARG_LABEL unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  gtest_discover_tests(${name}
    PROPERTIES LABELS "${ARG_LABEL}" TIMEOUT ${ARG_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()
